"""Cost of a ban through the daemon, as ratios against baselines measured in the same run.

* one `f2b-bgp ban` process  vs  one `python3 -c pass` process (interpreter start-up)
* N bans on one API connection (kernel backend, real routes in a throw-away
  namespace)  vs  N pings on the same connection (the API round trip alone)
* the daemon's resident memory after N bans  vs  the same daemon idle, and after
  the same N bans again (each extends its ban)  vs  after the first N (growth)

Run as root: python3 bench/api_throughput.py [N]
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import figure  # bench/report.py, beside this script

N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
PROCESSES = 20
CONFIG = """
[daemon]
socket = "{dir}/api.sock"
database = "{dir}/state.db"
[guards]
protected = ["198.51.100.0/24"]
allow_special = ["2001:db8:203::/48", "203.0.113.0/24"]
max_routes = {n}
max_rate = {n}
"""


def timed(run, count: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / count


def pipelined(path: str, requests: list[dict]) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(path)
        sock.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
        data = b""
        while data.count(b"\n") < len(requests):
            data += sock.recv(1 << 20)
        bad = [line for line in data.splitlines() if b'"ok":true' not in line]
        assert not bad, bad[:3]


def wait_for(path: Path, deadline: float) -> None:
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"daemon did not create {path}")
        time.sleep(0.02)


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmRSS for pid {pid}")


def main() -> None:
    ns = "f2bbench" + secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="f2b-bench-"))
    (work / "c.toml").write_text(CONFIG.format(dir=work, n=N + PROCESSES))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    daemon = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        daemon = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "f2b_bgp", "--config",
                                   str(work / "c.toml"), "serve"], stderr=subprocess.DEVNULL)
        sock = work / "api.sock"
        wait_for(sock, time.monotonic() + 20)
        cli = [sys.executable, "-m", "f2b_bgp", "--socket", str(sock)]
        start_up = timed(lambda: [subprocess.run([sys.executable, "-c", "pass"], check=True) for _ in range(PROCESSES)], PROCESSES)
        one_ban = timed(lambda: [subprocess.run([*cli, "ban", f"203.0.113.{i + 1}"], check=True, stdout=subprocess.DEVNULL)
                                 for i in range(PROCESSES)], PROCESSES)
        ping = timed(lambda: pipelined(str(sock), [{"op": "ping"}] * N), N)
        idle = rss(daemon.pid)  # `ip netns exec` execs the daemon: same pid
        ban_requests = [{"op": "ban", "prefix": f"2001:db8:203::{i:x}", "jail": "bench"} for i in range(N)]
        bans = timed(lambda: pipelined(str(sock), ban_requests), N)
        loaded = rss(daemon.pid)
        pipelined(str(sock), ban_requests)
        again = rss(daemon.pid)
        routes = subprocess.run(["ip", "-n", ns, "-6", "route", "show", "proto", "201"], capture_output=True, text=True)
        assert routes.stdout.count("\n") == N, "not every ban reached the kernel"
        print(f"client process: f2b-bgp ban {one_ban * 1000:.1f} ms, python3 -c pass {start_up * 1000:.1f} ms, "
              f"ratio {one_ban / start_up:.2f}")
        print(f"API, {N} requests on one connection: ban {bans * 1e6:.0f} us, ping {ping * 1e6:.0f} us, "
              f"ratio {bans / ping:.1f} ({1 / bans:.0f} bans/s with kernel routes)")
        print(f"daemon memory: idle {idle / 2**20:.1f} MiB, after {N} pipelined bans {loaded / 2**20:.1f} MiB, "
              f"ratio {loaded / idle:.2f}; the same bans again {again / 2**20:.1f} MiB, ratio {again / loaded:.2f}")
        group = f"client and API, {N} bans"
        figure(group, "one `f2b-bgp ban` process", one_ban * 1000, start_up * 1000, "ms", base="python3 -c pass")
        figure(group, "API ban, pipelined (kernel routes)", bans * 1e6, ping * 1e6, "us", base="API ping")
        figure(group, "daemon RSS after the bans", loaded / 2**20, idle / 2**20, "MiB", base="idle")
        figure(group, "daemon RSS after the same bans again", again / 2**20, loaded / 2**20, "MiB",
               base="after the first bans")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=20)
        subprocess.run(["ip", "netns", "del", ns], check=False)
        for f in work.iterdir():
            f.unlink()
        work.rmdir()


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the kernel backend writes routes in a throw-away namespace")
    main()
