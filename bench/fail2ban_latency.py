"""From a log line to the route in the firewall's FIB: each fail2ban action against the stock `route` recipe.

The docs/contracts.md lab (tests/lab): the firewall runs frr-examples/firewall, the
injector frr-examples/injector (FRR redistributes kernel routes) and the f2b-bgp daemon
with the kernel backend. One fail2ban-server runs inside the injector's namespace
(its pyinotify backend, so a log line is read at once) with three jails on the shipped
routeros-auth filter, maxretry 1:

* route: fail2ban's stock action.d/route.conf (`ip route add unreachable <ip>`): the
         recipe f2b-bgp replaces, through the same FRR injector config (the baseline, 1.00)
* conf:  banaction = bgp-blackhole     (a queue line; the daemon applies it on inotify)
* py:    banaction = bgp-blackhole.py  (the daemon's socket)

For each of N addresses per jail (half IPv4, half IPv6), one RouterOS login-failure line
is appended to the jail's log, and the time until `ip monitor route` in the firewall
shows the blackhole is recorded; one address at a time. Prints p50/p90/p99 per action
and p50 as a ratio to the recipe's.

Run as root:  python3 bench/fail2ban_latency.py [N]     (N: 100..1000, default 100; about
70 s; needs fail2ban, FRR and python3-pyinotify, else it says so and skips)
"""

from __future__ import annotations

import ipaddress
import statistics
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lab.f2bbgp import FW1, F2bBgp, lab_config  # noqa: E402
from tests.lab.fail2ban import SYSTEM_PYTHON, Fail2banServer, append, fail2ban_missing  # noqa: E402
from tests.lab.frr import Frr  # noqa: E402
from tests.lab.netns import HOSTS, Topology  # noqa: E402
from tests.lab.peers import FrrPeer  # noqa: E402
from tests.lab.process import netns_argv  # noqa: E402
from tests.lab.wait import wait_until  # noqa: E402

from report import figure  # noqa: E402  (bench/report.py)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
if not 100 <= N <= 1000:
    raise SystemExit("N must be 100..1000")
EXAMPLES = REPO / "frr-examples"
CONFIG = lab_config(guards="max_routes = 5000\nmax_rate = 5000",
                    rest=f'[bgp]\nlocal_as = 65001\nrouter_id = "198.51.100.2"\n{FW1}')
JAILS = """
[DEFAULT]
backend = pyinotify
filter = routeros-auth
maxretry = 1
bantime = 3600
ignoreself = false
ignoreip =
[sshd]
enabled = false
[routeros]
enabled = false
[route]
enabled = true
logpath = {dir}/route.log
action = route
[conf]
enabled = true
logpath = {dir}/conf.log
action = bgp-blackhole[queue="{queue}"]
[py]
enabled = true
logpath = {dir}/py.log
action = bgp-blackhole.py[socket="{socket}", queue="{queue}"]
"""
ORDER = ("route", "conf", "py")
LABELS = {"route": "stock route.conf (the recipe)", "conf": "bgp-blackhole.conf", "py": "bgp-blackhole.py"}


def addresses(index: int) -> list[str]:
    """N attacker addresses for jail number index: 50 IPv4 (203.0.113.100-249 shared by three jails), the rest IPv6."""
    v4 = [f"203.0.113.{100 + index * 50 + i}" for i in range(min(N // 2, 50))]
    return v4 + [f"2001:db8:203:{index + 1:x}::{i + 1:x}" for i in range(N - len(v4))]


class FibWatch:
    """`ip monitor route` in one namespace: when each route of `kind` first appeared (monotonic)."""

    def __init__(self, netns: str, kinds: tuple[str, ...] = ("blackhole",)) -> None:
        self.kinds = kinds
        self.seen: dict[str, float] = {}
        self.proc = subprocess.Popen(netns_argv(netns, ["ip", "monitor", "route"]), stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            words = line.split()
            if len(words) > 1 and words[0] in self.kinds:
                self.seen.setdefault(str(ipaddress.ip_network(words[1])), time.monotonic())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def routeros_line(address: str) -> str:
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return f"{stamp} 192.0.2.50 system,error,critical login failure for user admin from {address} via ssh"


def measure(server: Fail2banServer, firewall: FibWatch, injector: FibWatch, jail: str,
            ips: list[str]) -> tuple[list[float], list[float]]:
    """Per address: seconds until the firewall's FIB has it, and until the injector's kernel had it."""
    total, local = [], []
    for ip in ips:
        prefix = str(ipaddress.ip_network(ip))
        start = time.monotonic()
        append(server.workdir / f"{jail}.log", [routeros_line(ip)])
        seen = wait_until(lambda: firewall.seen.get(prefix), 15, f"{jail}: {prefix} in the firewall's FIB",
                          interval=0.001)
        total.append(seen - start)
        local.append(injector.seen[prefix] - start)
    return total, local


def main() -> None:
    if why := fail2ban_missing():
        raise SystemExit(why)
    if subprocess.run([SYSTEM_PYTHON, "-c", "import pyinotify"], capture_output=True).returncode:
        print("skipped: python3-pyinotify is not installed (fail2ban's polling backend would add up to 2 s per line)")
        return
    with ExitStack() as stack:
        topo = stack.enter_context(Topology())
        firewall = stack.enter_context(Frr(topo.ns("firewall"), {d: EXAMPLES / "firewall" / f"{d}.conf"
                                                                  for d in ("zebra", "staticd", "bgpd")}))
        stack.enter_context(Frr(topo.ns("injector"), {d: EXAMPLES / "injector" / f"{d}.conf" for d in ("zebra", "bgpd")}))
        daemon = stack.enter_context(F2bBgp(topo.ns("injector"), CONFIG))
        wait_until(lambda: FrrPeer(firewall).established(HOSTS["injector"]["4"]), 60, "BGP session")
        queue = daemon.workdir / "fail2ban.queue"
        jails = JAILS.replace("{queue}", str(queue)).replace("{socket}", str(daemon.socket))
        server = Fail2banServer(jails, log_files=[f"{j}.log" for j in ORDER])
        server.netns = topo.ns("injector")  # the stock route action writes the injector's kernel table
        stack.enter_context(server)
        watch = FibWatch(topo.ns("firewall"))
        stack.callback(watch.close)
        local = FibWatch(topo.ns("injector"), ("blackhole", "unreachable"))
        stack.callback(local.close)
        result = {jail: measure(server, watch, local, jail, addresses(i)) for i, jail in enumerate(ORDER)}
    base = statistics.median(result["route"][0])
    print(f"log line -> blackhole in the firewall's FIB, {N} bans per action (one at a time), kernel backend + FRR;")
    print("the last column: p50 of the part until the route was in the injector's kernel (fail2ban + action + f2b-bgp)")
    print(f"{'action':32s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'p50 x recipe':>13s} {'injector p50':>13s}")
    for jail in ORDER:
        total, part = result[jail]
        cuts = statistics.quantiles(total, n=100, method="inclusive")
        p50 = statistics.median(total)
        print(f"{LABELS[jail]:32s} {p50 * 1000:8.1f} {cuts[89] * 1000:8.1f} {cuts[98] * 1000:8.1f} {p50 / base:13.2f} "
              f"{statistics.median(part) * 1000:13.1f}")
        if jail != "route":
            group = f"fail2ban log line -> firewall FIB, {N} bans"
            figure(group, f"{LABELS[jail]}, p50", p50 * 1000, base * 1000, "ms", base="stock route.conf, p50")
            base90 = statistics.quantiles(result["route"][0], n=100, method="inclusive")[89]
            figure(group, f"{LABELS[jail]}, p90", cuts[89] * 1000, base90 * 1000, "ms", base="stock route.conf, p90")


if __name__ == "__main__":
    main()
