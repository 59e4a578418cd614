"""From a log line to the route in the firewall's FIB: each fail2ban action against the stock `route` recipe.

The docs/contracts.md lab (tests/lab): the firewall runs frr-examples/firewall. One
fail2ban-server runs inside the injector's namespace (its pyinotify backend, so a log
line is read at once) with five jails on the shipped routeros-auth filter, maxretry 1:

kernel phase: the injector runs frr-examples/injector (FRR redistributes kernel routes)
and an f2b-bgp daemon with the kernel backend.
* route:       fail2ban's stock action.d/route.conf (`ip route add unreachable <ip>`): the
               recipe f2b-bgp replaces, through the same FRR injector config (the baseline, 1.00)
* conf:        banaction = bgp-blackhole     (a queue line; the daemon applies it on inotify)
* py:          banaction = bgp-blackhole.py  (the daemon's socket)
exabgp phase: the injector's FRR is stopped; a second f2b-bgp daemon (ExaBGP backend only)
feeds ExaBGP, started from the shipped exabgp/exabgp.conf and exabgp.env, which peers
straight with the firewall.
* exabgp-conf, exabgp-py: the same two actions, to that daemon.

For each of N addresses per jail (half IPv4, half IPv6), one RouterOS login-failure line
is appended to the jail's log, and the time until `ip monitor route` in the firewall
shows the blackhole is recorded; one address at a time.

fail2ban's actions thread does not wake up for a new ticket: it polls its jail's queue
0.2, 0.6, 1.2 and 2.0 s after its last ban and then every 2 s cycle again (Utils.wait_for
in server/actions.py, fail2ban 1.0). A line appended at a random moment waits 0 to 0.8 s
(0.3 s on average) there, whichever action the jail has. One ban at a time, each line
comes a fixed time after the previous ban, and waits for the 0.2 s poll: the total comes
to about 0.2 s plus the filter for every action faster than that. So the script takes
fail2ban's log (`Found` by the filter, `Ban` by the actions thread, ms) and also reports
the latency without that wait, the part that depends on the action and the backend.
The targets (p50 at most 0.8x the recipe's through the kernel backend, 0.5x through
ExaBGP) are checked on that part.

Run as root:  python3 bench/fail2ban_latency.py [N]     (N: 100..1000, default 100; about
115 s; needs fail2ban, FRR, ExaBGP and python3-pyinotify, else it says so and skips)
"""

from __future__ import annotations

import ipaddress
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from f2b_bgp.peering.regenerate import reference_config  # noqa: E402
from tests.lab.exabgp import Exabgp, with_bridge_program  # noqa: E402
from tests.lab.f2bbgp import FW1, F2bBgp, exabgp_tables, lab_config  # noqa: E402
from tests.lab.fail2ban import SYSTEM_PYTHON, Fail2banServer, append, fail2ban_missing  # noqa: E402
from tests.lab.frr import Frr  # noqa: E402
from tests.lab.netns import HOSTS, Topology  # noqa: E402
from tests.lab.peers import FrrPeer  # noqa: E402
from tests.lab.process import netns_argv  # noqa: E402
from tests.lab.wait import wait_until  # noqa: E402
from tests.live.test_exabgp import EXABGP_DIR, exabgp_env  # noqa: E402

from report import figure  # noqa: E402  (bench/report.py)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
if not 100 <= N <= 1000:
    raise SystemExit("N must be 100..1000")
EXAMPLES = REPO / "frr-examples"
INJECTOR, FIREWALL = HOSTS["injector"]["4"], HOSTS["firewall"]["4"]
GUARDS = "max_routes = 5000\nmax_rate = 5000"
KERNEL_CONFIG = lab_config(guards=GUARDS, rest=f'[bgp]\nlocal_as = 65001\nrouter_id = "198.51.100.2"\n{FW1}')
EXABGP_CONFIG = lab_config(guards=GUARDS, rest=exabgp_tables(kernel=False))
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
[exabgp-conf]
enabled = true
logpath = {dir}/exabgp-conf.log
action = bgp-blackhole[queue="{xqueue}"]
[exabgp-py]
enabled = true
logpath = {dir}/exabgp-py.log
action = bgp-blackhole.py[socket="{xsocket}", queue="{xqueue}"]
"""
KERNEL_JAILS = ("route", "conf", "py")
EXABGP_JAILS = ("exabgp-conf", "exabgp-py")
ORDER = KERNEL_JAILS + EXABGP_JAILS
LABELS = {"route": "stock route.conf (the recipe)", "conf": "bgp-blackhole.conf, kernel",
          "py": "bgp-blackhole.py, kernel", "exabgp-conf": "bgp-blackhole.conf, ExaBGP",
          "exabgp-py": "bgp-blackhole.py, ExaBGP"}
TARGETS = {"conf": "<= 0.8", "py": "<= 0.8", "exabgp-conf": "<= 0.5", "exabgp-py": "<= 0.5"}
# bgpd applies its startup route-maps again this long after it starts (`bgp route-map delay-timer`, 5 s),
# sending every route once more: the first bans would share that work
ROUTE_MAP_DELAY = 6.0
# "2026-05-10 20:53:12,345 fail2ban.actions [9]: NOTICE  [route] Ban 203.0.113.100"
F2B_EVENT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*?\[([\w-]+)\] (Found|Ban) (\S+)")


def addresses(index: int) -> list[str]:
    """N attacker addresses for jail number index: 50 IPv4 (203.0.113.1-250 shared by five jails), the rest IPv6."""
    v4 = [f"203.0.113.{1 + index * 50 + i}" for i in range(min(N // 2, 50))]
    return v4 + [f"2001:db8:203:{index + 1:x}::{i + 1:x}" for i in range(N - len(v4))]


class FibWatch:
    """`ip monitor route` in one namespace: when each route of `kind` first appeared (time.time(), as logs)."""

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
                self.seen.setdefault(str(ipaddress.ip_network(words[1])), time.time())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class Ban:
    """One ban's moments (time.time()): the line appended, fail2ban's Found and Ban, the route in the FIB."""
    address: str
    appended: float
    fib: float
    found: float = 0.0
    banned: float = 0.0

    @property
    def total(self) -> float:
        return self.fib - self.appended

    @property
    def wait(self) -> float:
        """In fail2ban's queue, from the filter's Found to the actions thread's Ban."""
        return self.banned - self.found

    @property
    def acting(self) -> float:
        """The total without fail2ban's queue wait: filter, action, f2b-bgp, BGP, FIB."""
        return self.total - self.wait


def routeros_line(address: str) -> str:
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return f"{stamp} 192.0.2.50 system,error,critical login failure for user admin from {address} via ssh"


def measure(server: Fail2banServer, firewall: FibWatch, jail: str, ips: list[str]) -> list[Ban]:
    """One ban after the other: append the line, wait for the route in the firewall's FIB."""
    bans = []
    for ip in ips:
        prefix = str(ipaddress.ip_network(ip))
        start = time.time()
        append(server.workdir / f"{jail}.log", [routeros_line(ip)])
        seen = wait_until(lambda: firewall.seen.get(prefix), 15, f"{jail}: {prefix} in the firewall's FIB",
                          interval=0.001)
        bans.append(Ban(ip, start, seen))
    return bans


def add_fail2ban_times(log: Path, result: dict[str, list[Ban]]) -> None:
    """Found and Ban of each address from fail2ban's log (local time, ms)."""
    stamps: dict[tuple[str, str, str], float] = {}
    for line in log.read_text(errors="replace").splitlines():
        if match := F2B_EVENT.match(line):
            when, jail, event, address = match.groups()
            stamps[(jail, event, address)] = datetime.strptime(when, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    for jail, bans in result.items():
        for ban in bans:
            ban.found, ban.banned = stamps[(jail, "Found", ban.address)], stamps[(jail, "Ban", ban.address)]


def start_exabgp(stack: ExitStack, topo: Topology, daemon: F2bBgp, firewall: Frr) -> None:
    """ExaBGP from the shipped files, feeding on `daemon`, in place of the injector's FRR (already stopped)."""
    program = str(reference_config().exabgp.bridge_program)
    conf = with_bridge_program(EXABGP_DIR / "exabgp.conf", daemon.workdir, program)
    stack.enter_context(Exabgp(topo.ns("injector"), conf, listen=INJECTOR, workdir=daemon.workdir,
                               env=exabgp_env(daemon), env_file=EXABGP_DIR / "exabgp.env"))
    wait_until(lambda: FrrPeer(firewall).established(INJECTOR), 60, "BGP session ExaBGP - firewall")
    wait_until(lambda: daemon.call("status")["backends"]["exabgp"]["peers"].get(FIREWALL, {}).get("state") == "up",
               30, "the daemon sees the firewall up")


def cuts(values: Sequence[float]) -> tuple[float, float, float]:
    """p50, p90, p99 in ms."""
    q = statistics.quantiles(values, n=100, method="inclusive")
    return statistics.median(values) * 1000, q[89] * 1000, q[98] * 1000


def report(result: dict[str, list[Ban]]) -> None:
    base_total = cuts([b.total for b in result["route"]])
    base_acting = cuts([b.acting for b in result["route"]])
    print(f"log line -> blackhole in the firewall's FIB, {N} bans per action, one at a time; ms")
    print("total: as measured, with fail2ban's queue wait (about 200 ms less the previous ban's latency here);")
    print("acting: the total without that wait (filter, action, f2b-bgp, BGP, FIB); wait: fail2ban's Found -> Ban")
    print(f"{'action':30s} {'total p50':>9s} {'p90':>6s} {'p99':>6s} {'x':>5s} {'wait p50':>9s}"
          f" {'acting p50':>10s} {'p90':>6s} {'p99':>6s} {'x':>5s}")
    for jail in ORDER:
        bans = result[jail]
        total, acting = cuts([b.total for b in bans]), cuts([b.acting for b in bans])
        wait = statistics.median(b.wait for b in bans) * 1000
        print(f"{LABELS[jail]:30s} {total[0]:9.1f} {total[1]:6.1f} {total[2]:6.1f} {total[0] / base_total[0]:5.2f}"
              f" {wait:9.1f} {acting[0]:10.1f} {acting[1]:6.1f} {acting[2]:6.1f} {acting[0] / base_acting[0]:5.2f}")
        if jail == "route":
            continue
        group = f"fail2ban log line -> firewall FIB, {N} bans"
        # the target is on the total, as measured; the part without the wait is what the action changes
        figure(group, f"{LABELS[jail]}, p50", total[0], base_total[0], "ms", base="stock route.conf, p50",
               target=TARGETS[jail])
        figure(group, f"{LABELS[jail]}, p50 without fail2ban's queue wait", acting[0], base_acting[0], "ms",
               base="stock route.conf, same")
        figure(group, f"{LABELS[jail]}, p99 without fail2ban's queue wait", acting[2], base_acting[2], "ms",
               base="stock route.conf, same")


def main() -> None:
    if why := fail2ban_missing():
        raise SystemExit(why)
    if subprocess.run([SYSTEM_PYTHON, "-c", "import pyinotify"], capture_output=True).returncode:
        print("skipped: python3-pyinotify is not installed (fail2ban's polling backend would add up to 2 s per line)")
        return
    if subprocess.run([sys.executable, "-c", "import exabgp"], capture_output=True).returncode:
        print("skipped: ExaBGP is not installed for", sys.executable)
        return
    with ExitStack() as stack:
        topo = stack.enter_context(Topology())
        firewall = stack.enter_context(Frr(topo.ns("firewall"), {d: EXAMPLES / "firewall" / f"{d}.conf"
                                                                  for d in ("zebra", "staticd", "bgpd")}))
        injector = stack.enter_context(Frr(topo.ns("injector"), {d: EXAMPLES / "injector" / f"{d}.conf"
                                                                  for d in ("zebra", "bgpd")}))
        settled = time.monotonic() + ROUTE_MAP_DELAY
        kernel = stack.enter_context(F2bBgp(topo.ns("injector"), KERNEL_CONFIG))
        exabgp = stack.enter_context(F2bBgp(topo.ns("injector"), EXABGP_CONFIG))
        wait_until(lambda: FrrPeer(firewall).established(INJECTOR), 60, "BGP session")
        jails = JAILS
        for key, daemon in (("", kernel), ("x", exabgp)):
            jails = jails.replace(f"{{{key}queue}}", str(daemon.workdir / "fail2ban.queue"))
            jails = jails.replace(f"{{{key}socket}}", str(daemon.socket))
        server = Fail2banServer(jails, log_files=[f"{j}.log" for j in ORDER])
        server.netns = topo.ns("injector")  # the stock route action writes the injector's kernel table
        stack.enter_context(server)
        watch = FibWatch(topo.ns("firewall"))
        stack.callback(watch.close)
        time.sleep(max(0.0, settled - time.monotonic()))
        result = {jail: measure(server, watch, jail, addresses(ORDER.index(jail))) for jail in KERNEL_JAILS}
        injector.stop()
        start_exabgp(stack, topo, exabgp, firewall)
        result |= {jail: measure(server, watch, jail, addresses(ORDER.index(jail))) for jail in EXABGP_JAILS}
        add_fail2ban_times(server.log, result)
    report(result)


if __name__ == "__main__":
    main()
