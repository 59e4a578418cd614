"""What batching buys the ExaBGP backend, as ratios against baselines measured in the same run.

* N IPv6 bans on one API connection through a real ExaBGP, batch_size 200 (the
  default)  vs  batch_size 1 (one `announce` line, one ack wait per ban)
* both  vs  N pings on the same connection (the API round trip alone)

ExaBGP runs from the files `f2b-bgp peering exabgp` renders for this config, in
a throw-away namespace whose only peer (198.51.100.1 on its loopback) never
answers: ExaBGP acknowledges each command once it holds the routes, which is
the cost measured here. tests/live/test_exabgp.py proves they reach firewalls.

Run as root: python3 bench/exabgp_batch.py [N]
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from api_throughput import CONFIG as API_CONFIG, pipelined, timed, wait_for  # noqa: E402  (a sibling script, not a package)
from report import figure  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
CONFIG = API_CONFIG + """[bgp]
local_as = 65001
router_id = "198.51.100.2"
next_hop_ipv6 = "2001:db8:1::2"
[[bgp.peers]]
name = "nobody"
address = "198.51.100.1"
asn = 65000
local_address = "198.51.100.2"
[backends.kernel]
enabled = false
[backends.exabgp]
enabled = true
bridge_socket = "{dir}/exabgp.sock"
bridge_user = "root"  # the lab runs ExaBGP as root
batch_size = {batch}
"""


def status(sock: Path) -> dict:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b'{"op": "status"}\n')
        return json.loads(s.makefile("rb").readline())["backends"]["exabgp"]


def run(ns: str, batch: int) -> tuple[float, float, int]:
    """(seconds per ban, seconds per ping, lines sent) for one daemon + ExaBGP with this batch size."""
    work = Path(tempfile.mkdtemp(prefix="f2b-bench-exabgp-"))
    procs: list[subprocess.Popen] = []
    try:
        config = work / "c.toml"
        config.write_text(CONFIG.format(dir=work, n=N, batch=batch))
        in_ns = ["ip", "netns", "exec", ns]
        f2bbgp = [sys.executable, "-m", "f2b_bgp", "--config", str(config)]
        subprocess.run([*f2bbgp, "peering", "exabgp", "--output-dir", str(work)], check=True, stdout=subprocess.DEVNULL)
        procs.append(subprocess.Popen([*in_ns, *f2bbgp, "serve"], stderr=subprocess.DEVNULL))
        sock = work / "api.sock"
        wait_for(sock, time.monotonic() + 20)
        env = os.environ | {"EXABGP_ENVFILE": str(work / "exabgp.env"), "exabgp_daemon_user": "root",
                            "exabgp_log_destination": "stdout", "exabgp_api_cli": "false",
                            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        procs.append(subprocess.Popen([*in_ns, sys.executable, "-m", "exabgp", "server", str(work / "exabgp.conf")],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        while not status(sock)["ready"]:
            if time.monotonic() > deadline:
                raise SystemExit("the bridge did not connect within 30 s")
            time.sleep(0.05)
        ping = timed(lambda: pipelined(str(sock), [{"op": "ping"}] * N), N)
        ban = timed(lambda: pipelined(str(sock), [{"op": "ban", "prefix": f"2001:db8:203::{i:x}", "jail": "bench"}
                                                  for i in range(N)]), N)
        sent = status(sock)["counters"]
        assert sent["announced"] == N, f"ExaBGP acknowledged {sent['announced']} of {N}"
        return ban, ping, sent["lines"]
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=20)
        shutil.rmtree(work)


def main() -> None:
    ns = "f2bbench" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for args in (["link", "set", "lo", "up"], ["addr", "add", "198.51.100.2/32", "dev", "lo"],
                     ["addr", "add", "198.51.100.1/32", "dev", "lo"]):
            subprocess.run(["ip", "-n", ns, *args], check=True)
        batched, ping, lines = run(ns, 200)
        single, _, single_lines = run(ns, 1)
        print(f"ExaBGP backend, {N} IPv6 bans on one connection: batch_size 200 {batched * 1e6:.0f} us/ban "
              f"({lines} lines), batch_size 1 {single * 1e6:.0f} us/ban ({single_lines} lines), "
              f"ratio {single / batched:.1f}")
        print(f"against the API round trip ({ping * 1e6:.0f} us/ping): batched {batched / ping:.1f}x, "
              f"unbatched {single / ping:.1f}x")
        group = f"ExaBGP backend, {N} bans"
        figure(group, "pipelined bans, batch_size 200", batched * 1e6, ping * 1e6, "us", base="API ping")
        figure(group, "pipelined bans, batch_size 1", single * 1e6, batched * 1e6, "us", base="batch_size 200")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: ExaBGP and the daemon run in a throw-away namespace")
    main()
