"""Cost per request at any size: a daemon holding N stored bans against the same daemon holding none.

For each size (0 as the baseline, then N), the store is filled directly in SQLite (as
a daemon that ran for a long time leaves it), the daemon is started twice (the first
start checks every ban against the guards once; the second is the usual restart) and
measured:

* start-up: process start to "ready" (second start)
* `status`, `show`, `ban`: latency over the Unix socket, median and p99 of 200 calls
* `list` of every ban, page by page: total time and the longest single page (the
  longest any other client could wait behind it)
* resident memory after start, and the database size

The ExaBGP backend runs without a bridge and the kernel backend is off, so this
measures the daemon (store, service, API), not a backend: bench/kernel_routes.py
and bench/bulk.py measure those. The daemon runs in a throw-away network namespace.

Run: python3 bench/scale.py [N ...]   (default 100000; `make bench-full` adds 1000000)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from f2b_bgp.model import Prefix
from report import figure  # bench/report.py, beside this script
from f2b_bgp.store import Store

SIZES = [int(a) for a in sys.argv[1:]] or [100_000]
UNITS = {"startup_s": "s", "status_ms": "ms", "status_p99_ms": "ms", "show_ms": "ms", "ban_ms": "ms", "list_s": "s",
         "list_page_max_ms": "ms", "rss_mib": "MiB", "db_mib": "MiB"}
TARGETS = {"startup_s": "<= 5 s", "status_ms": "<= 10 ms", "show_ms": "<= 10 ms", "ban_ms": "<= 10 ms",
           "list_page_max_ms": "<= 50 ms", "rss_mib": "<= 300 MiB", "db_mib": "<= 200 MiB"}
CALLS = 200
BASE = Prefix.parse("2001:db8:203::/48").value
CONFIG = """
[daemon]
socket = "{dir}/api.sock"
database = "{dir}/state.db"
max_bantime = 31536000
[guards]
protected = ["198.51.100.0/24"]
allow_special = ["2001:db8:203::/48", "203.0.113.0/24"]
max_routes = {limit}
max_rate = 1000000
[bgp]
next_hop_ipv4 = "198.51.100.2"
next_hop_ipv6 = "2001:db8:1::2"
prefix_limit = {limit}
[backends.kernel]
enabled = false
[backends.exabgp]
enabled = true
bridge_socket = "{dir}/exabgp.sock"
bridge_user = "root"
"""


def prefix(i: int) -> str:
    return str(Prefix(6, BASE + (i << 16) + 1, 128))


def fill(db: Path, n: int) -> None:
    """N claims as a long-running daemon leaves them (one owner each, a year to go)."""
    Store(db).close()
    con = sqlite3.connect(db)
    now = time.time()
    with con:
        con.executemany("INSERT INTO claims (prefix, jail, reason, created, expires) VALUES (?, 'sshd', '', ?, ?)",
                        ((prefix(i), now, now + 31536000) for i in range(n)))
        con.execute("INSERT OR REPLACE INTO meta VALUES ('settled', ?)", (str(now),))
    con.close()


class Api:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.reader = self.sock.makefile("rb")

    def call(self, **request: object) -> dict:
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        answer = json.loads(self.reader.readline())
        assert answer["ok"], answer
        return answer

    def timed(self, **request: object) -> float:
        start = time.perf_counter()
        self.call(**request)
        return time.perf_counter() - start


def start(workdir: Path, netns: str) -> tuple[subprocess.Popen[bytes], float]:
    log = (workdir / "daemon.log").open("ab")
    began = time.perf_counter()
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-m", "f2b_bgp",
                             "--config", str(workdir / "config.toml"), "serve"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while b"ready socket=" not in (workdir / "daemon.log").read_bytes().split(b"stopping")[-1]:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"daemon did not start:\n{(workdir / 'daemon.log').read_text()[-2000:]}")
        time.sleep(0.01)
    return proc, time.perf_counter() - began


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(n: int) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="f2b-bench-scale-"))
    netns = f"f2bscale{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        (workdir / "config.toml").write_text(CONFIG.format(dir=workdir, limit=max(n + 1000, 10000)))
        fill(workdir / "state.db", n)
        first, _ = start(workdir, netns)  # checks every stored ban against the guards once
        stop(first)
        proc, startup = start(workdir, netns)
        try:
            api = Api(workdir / "api.sock")
            probe = prefix(n // 2) if n else "2001:db8:203::1"
            status = [api.timed(op="status") for _ in range(CALLS)]
            show = [api.timed(op="show", prefix=probe) for _ in range(CALLS)]
            ban = [api.timed(op="ban", prefix=f"203.0.113.{1 + i % 200}", jail="bench") for i in range(CALLS)]
            listed, pages, after = 0, [], ""
            while True:
                started = time.perf_counter()
                page = api.call(op="list", after=after)
                pages.append(time.perf_counter() - started)
                listed += len(page["bans"])
                if page["next"] is None:
                    break
                after = page["next"]
            assert listed >= n, (listed, n)
            return {
                "startup_s": startup, "status_ms": 1000 * statistics.median(status),
                "status_p99_ms": 1000 * sorted(status)[int(CALLS * 0.99) - 1],
                "show_ms": 1000 * statistics.median(show), "ban_ms": 1000 * statistics.median(ban),
                "list_s": sum(pages), "list_page_max_ms": 1000 * max(pages), "rss_mib": rss_mib(proc.pid),
                "db_mib": sum(p.stat().st_size for p in workdir.glob("state.db*")) / 2**20,
            }
        finally:
            stop(proc)
    finally:
        subprocess.run(["ip", "netns", "delete", netns], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    base = measure(0)
    print(f"{'figure':18} {'0 bans':>10}" + "".join(f" {f'{n:,} bans':>14} {'ratio':>7}" for n in SIZES))
    results = {n: measure(n) for n in SIZES}
    for key, value in base.items():
        row = f"{key:18} {value:10.2f}"
        for n in SIZES:
            row += f" {results[n][key]:14.2f} {results[n][key] / value if value else float('nan'):7.2f}"
        print(row)
    for n in SIZES:
        for key, value in base.items():
            figure(f"scale, {n:,} stored bans", key, results[n][key], value, UNITS[key], base="0 stored bans",
                   target=TARGETS.get(key, "") if n >= 1_000_000 else "")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    main()
