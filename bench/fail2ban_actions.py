"""Cost per ban of each shipped fail2ban action inside a real fail2ban-server, as a ratio to a no-op action.

One fail2ban-server (its own temp conf dir, socket, database; the stock jail.conf and our
fail2ban/ files as in tests/live/test_fail2ban.py) and a real f2b-bgp daemon with the
kernel backend in a throw-away namespace. Jails:

* noop:   a .conf action whose actionban/actionunban are `true` (a fork per ban and
          fail2ban's own overhead: the baseline, 1.00)
* nooppy: a Python action whose ban() does nothing (fail2ban's own cost of a Python action)
* conf:   banaction = bgp-blackhole     (one queue line per ban, shell built-ins)
* py:     banaction = bgp-blackhole.py  (in-process, one pipelined socket)

Each gets N distinct addresses (half IPv4 from 198.18.0.0/15, half IPv6 from 2001:db8::/32)
in one `fail2ban-client set JAIL banip ...` call, which runs the actions synchronously, so
its wall time is the cost. Then a storm of STORM bans through each of conf and py: the
rate fail2ban hands them over (the banip call) and the rate until every route is in the
kernel (the daemon's work included). Every address must end up a route (noop: none).

Run as root:  python3 bench/fail2ban_actions.py [N] [STORM]   (N: 1..5000, default the
environment's F2B_BENCH_BANS, else 200; STORM: default 2000; about 1 min)
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

from tests.lab.fail2ban import FAIL2BAN_SERVER, Fail2banServer, Namespace, fail2ban_missing  # noqa: E402
from tests.lab.f2bbgp import F2bBgp  # noqa: E402
from tests.lab.wait import wait_until  # noqa: E402

from report import figure  # noqa: E402  (bench/report.py)

N = int(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("F2B_BENCH_BANS", "200"))
STORM = int(sys.argv[2] if len(sys.argv) > 2 else "2000")
if not 1 <= N <= 5000 or not 1 <= STORM <= 5000:
    raise SystemExit("N and STORM must be 1..5000")
CONFIG = f"""
[daemon]
socket = "{{workdir}}/api.sock"
database = "{{workdir}}/state.db"
[guards]
protected = ["198.51.100.0/24"]
allow_special = ["198.18.0.0/15", "2001:db8::/32"]
max_routes = {3 * N + 2 * STORM + 10}
max_rate = {3 * N + 2 * STORM + 10}
"""
NOOP_ACTION = """[Definition]
actionban = true
actionunban = true
"""
NOOP_PY_ACTION = """from fail2ban.server.action import ActionBase


class NoopAction(ActionBase):
    def start(self):
        pass

    def stop(self):
        pass

    def ban(self, aInfo):
        pass

    def unban(self, aInfo):
        pass


Action = NoopAction
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
[nooppy]
enabled = true
logpath = {dir}/nooppy.log
action = bench-noop.py
[stormconf]
enabled = true
logpath = {dir}/stormconf.log
action = bgp-blackhole
[stormpy]
enabled = true
logpath = {dir}/stormpy.log
action = bgp-blackhole.py
"""
ORDER = ("noop", "nooppy", "conf", "py")
STORMS = ("stormconf", "stormpy")
ROUTED = ("conf", "py", "stormconf", "stormpy")
DEADLINE = 300  # seconds for the daemon to route a run


def addresses(index: int, count: int) -> list[str]:
    """count distinct addresses for jail number index: half IPv4, half IPv6."""
    first = int(ipaddress.ip_address("198.18.0.1")) + index * 20000
    half = count // 2
    return ([str(ipaddress.ip_address(first + i)) for i in range(count - half)]
            + [f"2001:db8:{index + 1:x}::{i + 1:x}" for i in range(half)])


def run(server: Fail2banServer, ns: Namespace, jail: str, ips: list[str]) -> tuple[float, float]:
    """Seconds for fail2ban's banip call, and until every address is a route (0 for no-op jails)."""
    start = time.perf_counter()
    server.client("set", jail, "banip", *ips, timeout=3600)
    handed = time.perf_counter() - start
    wanted = {str(ipaddress.ip_network(ip)) for ip in ips} if jail in ROUTED else set()
    routed = wait_until(lambda: wanted <= set(ns.routes()) and time.perf_counter(), DEADLINE, f"{jail}: every route")
    banned = set(server.banned(jail))
    if len(banned) != len(ips):
        raise SystemExit(f"{jail}: fail2ban banned {len(banned)}/{len(ips)}\n{server.log_tail(20)}")
    return handed, (routed - start) if wanted else 0.0


def main() -> None:
    if why := fail2ban_missing():
        raise SystemExit(why)
    with Namespace("f2bbench") as ns, F2bBgp(ns.name, CONFIG) as daemon:
        queue = daemon.workdir / "fail2ban.queue"
        server = Fail2banServer(JAILS, {"bgp-blackhole.local": f"[Init]\nqueue = {queue}\n",
                                        "bench-noop.conf": NOOP_ACTION, "bench-noop.py": NOOP_PY_ACTION},
                                env={"F2B_BGP_SOCKET": str(daemon.socket), "F2B_BGP_QUEUE": str(queue)},
                                log_files=[f"{j}.log" for j in ORDER + STORMS])
        with server:
            cost = {jail: run(server, ns, jail, addresses(i, N)) for i, jail in enumerate(ORDER)}
            storm = {jail: run(server, ns, jail, addresses(len(ORDER) + i, STORM)) for i, jail in enumerate(STORMS)}
        version = subprocess.run([FAIL2BAN_SERVER, "-V"], capture_output=True, text=True).stdout.split()
    base = cost["noop"][0] / N
    print(f"fail2ban {version[-1] if version else '?'}, {N} bans per action via one `set JAIL banip` "
          f"({N - N // 2} IPv4 + {N // 2} IPv6); cost = fail2ban's time per ban")
    print(f"{'action':36s} {'ms/ban':>8s} {'bans/s':>8s} {'x no-op':>8s} {'routed s':>9s}")
    labels = {"noop": "no-op .conf (actionban = true)", "nooppy": "no-op .py (ban() does nothing)",
              "conf": "bgp-blackhole.conf (queue line)", "py": "bgp-blackhole.py (pipelined socket)"}
    for jail in ORDER:
        each = cost[jail][0] / N
        routed = f"{cost[jail][1]:9.2f}" if jail in ROUTED else f"{'-':>9s}"
        print(f"{labels[jail]:36s} {each * 1000:8.3f} {1 / each:8.0f} {each / base:8.2f} {routed}")
        if jail != "noop":
            figure(f"fail2ban actions, {N} bans", labels[jail], each * 1000, base * 1000, "ms/ban",
                   base=labels["noop"])
    print(f"storm of {STORM} bans in one call: bans/s handed over by fail2ban, and until every route is in the kernel")
    for jail in STORMS:
        handed, routed = storm[jail]
        print(f"{labels[jail.replace('storm', '')]:36s} handed {STORM / handed:7.0f}/s  routed {STORM / routed:7.0f}/s")
        label = labels[jail.replace("storm", "")].split(" (")[0]
        for what, seconds in (("handed over", handed), ("routed", routed)):
            figure(f"fail2ban storm, {STORM} bans", f"{label}: {what}", STORM / seconds, 1 / base, "bans/s",
                   base="no-op .conf", higher_is_better=True)


if __name__ == "__main__":
    main()
