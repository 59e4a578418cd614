"""A client that pipelines requests and never reads the answers, while another pings the daemon
(tests/live/test_faults.py step 030, bench/faults.py at size)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f2b_bgp.client import Client

from .f2bbgp import F2bBgp
from .faults import Tally, ban_many, compare, kernel_config, log_since, log_size, our_routes, stored
from .netns import Topology
from .wait import wait_until


@dataclass
class NeverReads:
    tally: Tally
    sent: int  # requests the attacker got into the socket
    rss_before_mib: float
    rss_peak_mib: float
    quiet: Pings  # another client's pings before the attack (the host's own noise)
    attacked: Pings  # the same during it
    dropped_after_s: float  # when the daemon dropped the attacker, from the attack's start


@dataclass(frozen=True)
class Pings:
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def never_reads(topology: Topology, routes: int, seconds: float, quiet: float = 3) -> NeverReads:
    """ROUTES bans in place; a client pipelines `list` requests (the largest page) for SECONDS and never
    reads an answer, while another client pings every 10 ms (QUIET seconds before too) and the daemon's
    memory is sampled."""
    with F2bBgp(topology.ns("injector"), kernel_config(routes + 10), serve_args=("--discard",)) as daemon, \
            Client(str(daemon.socket), timeout=30) as pinger:
        acknowledged = set(ban_many(daemon, [f"2001:db8:203:e::{i:x}" for i in range(routes)], "quiet"))
        before = _rss_mib(daemon.pid)
        calm, _ = _ping_for(pinger, quiet, daemon.pid)
        mark = log_size(daemon)
        attacker = _Attacker(daemon.socket, {"op": "list", "limit": 2000})
        started = time.monotonic()
        attacker.start()
        try:
            attacked, peak = _ping_for(pinger, seconds, daemon.pid)
            dropped = wait_until(lambda: any("api-client-dropped" in line for line in log_since(daemon, mark))
                                 and time.monotonic() - started, 60, "the daemon dropped the client that never reads")
        finally:
            attacker.stop.set()
            attacker.join(10)
            attacker.conn.close()
        lost, stale, dup = compare(our_routes(topology), stored(daemon), acknowledged)
        tally = Tally("client never reads", len(acknowledged), lost, stale, dup, 0.0,
                      f"ping p99 {attacked.p99_ms:.1f} ms (quiet {calm.p99_ms:.1f} ms), RSS {before:.0f} -> {peak:.0f} MiB")
        daemon.call("flush")
        return NeverReads(tally, attacker.sent, before, peak, calm, attacked, dropped)


def _ping_for(client: Client, seconds: float, pid: int) -> tuple[Pings, float]:
    """Ping every 10 ms for SECONDS: the latencies, and the peak RSS of PID meanwhile."""
    latencies, peak, end = [], 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        client.call("ping")
        latencies.append((time.perf_counter() - t0) * 1000)
        peak = max(peak, _rss_mib(pid))
        time.sleep(0.01)  # the pinger's pace, not a synchronisation
    latencies.sort()
    n = len(latencies)
    return Pings(n, latencies[n // 2], latencies[min(n - 1, int(n * 0.99))], latencies[-1]), peak


class _Attacker(threading.Thread):
    """Writes REQUEST again and again as fast as the socket takes it, reads nothing; bounded by time and count."""

    MAX_REQUESTS = 1_000_000

    def __init__(self, path: Path, request: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.connect(str(path))
        self.conn.settimeout(0.05)
        self.line = json.dumps(request).encode() + b"\n"
        self.stop, self.sent = threading.Event(), 0

    def run(self) -> None:
        chunk = self.line * 1000
        while not self.stop.is_set() and self.sent < self.MAX_REQUESTS:
            try:
                self.sent += self.conn.send(chunk) // len(self.line)
            except TimeoutError:
                continue  # the socket is full: the daemon stopped reading us
            except OSError:
                return  # dropped


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")
