"""Cost per ban of each shipped fail2ban action inside a real fail2ban-server, as a ratio to a no-op action.

One fail2ban-server (its own temp conf dir, socket, database; the stock jail.conf and our
fail2ban/ files as in tests/live/test_fail2ban.py) with three jails:

* noop: a .conf action whose actionban/actionunban are `true` (a fork per ban and
  fail2ban's own overhead: the baseline)
* conf: banaction = bgp-blackhole     (one f2b-bgp client process per ban)
* py:   banaction = bgp-blackhole.py  (in-process, one persistent socket)

and a real f2b-bgp daemon with the kernel backend in a throw-away namespace. Each jail
gets N distinct addresses (half IPv4 from 198.18.0.0/15, half IPv6 from 2001:db8::/32) in
one `fail2ban-client set JAIL banip ...` call, which runs the actions synchronously, so its
wall time is the cost. After each run every address must be a route (noop: none).

Run as root:  python3 bench/fail2ban_actions.py [N]     (N: 1..5000; default the
environment's F2B_BENCH_BANS, else 200, about 30 s; the conf run takes N x ~0.13 s, so
N = 1000, the figures in docs/fail2ban.md, takes about 2.5 min:
`F2B_BENCH_BANS=1000 make bench`)
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lab.fail2ban import F2B_BGP, FAIL2BAN_SERVER, Fail2banServer, Namespace, fail2ban_missing  # noqa: E402
from tests.lab.f2bbgp import F2bBgp  # noqa: E402

N = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("F2B_BENCH_BANS", "200"))
if not 1 <= N <= 5000:
    raise SystemExit("N must be 1..5000")
CONFIG = f"""
[daemon]
socket = "{{workdir}}/api.sock"
database = "{{workdir}}/state.db"
[guards]
protected = ["198.51.100.0/24"]
allow_special = ["198.18.0.0/15", "2001:db8::/32"]
max_routes = {3 * N + 10}
max_rate = {3 * N + 10}
"""
NOOP_ACTION = """[Definition]
actionban = true
actionunban = true
"""
JAILS = """
[DEFAULT]
backend = polling
filter = routeros-auth
bantime = 3600
ignoreself = false
ignoreip =
[sshd]
enabled = false
[routeros]
enabled = false
[noop]
enabled = true
logpath = {dir}/noop.log
action = bench-noop
[conf]
enabled = true
logpath = {dir}/conf.log
action = bgp-blackhole
[py]
enabled = true
logpath = {dir}/py.log
action = bgp-blackhole.py
"""
ORDER = ("noop", "conf", "py")


def addresses(index: int, count: int) -> list[str]:
    """count distinct addresses for jail number index: half IPv4, half IPv6."""
    first = int(ipaddress.ip_address("198.18.0.1")) + index * 20000
    half = count // 2
    return ([str(ipaddress.ip_address(first + i)) for i in range(count - half)]
            + [f"2001:db8:{index + 1:x}::{i + 1:x}" for i in range(half)])


def main() -> None:
    if why := fail2ban_missing():
        raise SystemExit(why)
    with Namespace("f2bbench") as ns, F2bBgp(ns.name, CONFIG) as daemon:
        server = Fail2banServer(JAILS, {"bgp-blackhole.local": f"[Init]\nsocket = {daemon.socket}\nf2bbgp = {F2B_BGP}\n",
                                        "bench-noop.conf": NOOP_ACTION},
                                env={"F2B_BGP_SOCKET": str(daemon.socket)},
                                log_files=[f"{j}.log" for j in ORDER])
        with server:
            cost = {}
            for index, jail in enumerate(ORDER):
                ips = addresses(index, N)
                start = time.perf_counter()
                server.client("set", jail, "banip", *ips, timeout=3600)
                cost[jail] = (time.perf_counter() - start) / N
                banned = set(server.banned(jail))
                routes = ns.routes()
                expected = 0 if jail == "noop" else N
                have = sum(str(ipaddress.ip_network(ip)) in routes for ip in ips)
                if len(banned) != N or have != expected:
                    raise SystemExit(f"{jail}: fail2ban banned {len(banned)}/{N}, routes {have}/{expected}\n"
                                     f"{server.log_tail(20)}")
        base = cost["noop"]
        version = subprocess.run([FAIL2BAN_SERVER, "-V"], capture_output=True, text=True).stdout.split()
        print(f"fail2ban {version[-1] if version else '?'}, {N} bans per action via one `set JAIL banip` ({N - N // 2} IPv4 + {N // 2} IPv6)")
        print(f"{'action':32s} {'ms/ban':>8s} {'bans/s':>8s} {'x no-op':>8s}")
        labels = {"noop": "no-op .conf (actionban = true)", "conf": "bgp-blackhole.conf (CLI)", "py": "bgp-blackhole.py (socket)"}
        for jail in ORDER:
            print(f"{labels[jail]:32s} {cost[jail] * 1000:8.2f} {1 / cost[jail]:8.0f} {cost[jail] / base:8.2f}")


if __name__ == "__main__":
    main()
