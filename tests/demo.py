"""`make demo`: the main job end to end, in throw-away network namespaces (run as root).

A MikroTik's remote-syslog lines show failed logins from 203.0.113.66; the
fail2ban jail `routeros` (shipped filter routeros-auth, shipped action
bgp-blackhole) bans it; the f2b-bgp daemon (kernel backend, in the injector
namespace) checks the address and writes a blackhole route; FRR on the
injector announces it with 65535:666 (frr-examples/injector); the firewall
(frr-examples/firewall, loose uRPF) installs it and drops the attacker's
packets on ingress. Then fail2ban lifts the ban and traffic flows again.

Every config is a shipped file byte for byte; the demo adds only jail.local
(the log file, the daemon's queue) and the daemon's config. Prints numbered
steps with the time each took; exits 1 if the attacker is not stopped.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from tests.lab.f2bbgp import FW1, F2bBgp, lab_config
from tests.lab.fail2ban import Fail2banServer, append, fail2ban_missing
from tests.lab.frr import Frr
from tests.lab.netns import HOSTS, Topology, host_prefix
from tests.lab.peers import FrrPeer, kernel_routes
from tests.lab.probe import ServerListener, probe
from tests.lab.wait import wait_until

EXAMPLES = Path(__file__).resolve().parents[1] / "frr-examples"
ATTACKER, SERVER = HOSTS["attacker"]["4"], HOSTS["server"]["4"]
DAEMON_CONFIG = lab_config(rest=f"""[bgp]
local_as = 65001
router_id = "198.51.100.2"
{FW1}""")
# jail.local over the shipped jail.d/routeros-bgp-blackhole.conf: the demo's log file and the daemon's queue.
JAIL_LOCAL = """
[DEFAULT]
ignoreself = false
ignoreip =
backend = polling

[sshd]
enabled = false

[routeros]
logpath = {dir}/routeros.log
action = bgp-blackhole[queue="{queue}"]
"""
MAXRETRY = 3  # jail.d/routeros-bgp-blackhole.conf


def routeros_line(address: str) -> str:
    """What rsyslog (fail2ban/rsyslog/30-routeros.conf) writes for one RouterOS login failure."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return f"{stamp} 192.0.2.50 system,error,critical login failure for user admin from {address} via ssh"


class Steps:
    """Numbered steps, each with the time since the previous one."""

    def __init__(self) -> None:
        self.start = self.last = time.monotonic()
        self.n = 0

    def __call__(self, text: str) -> None:
        now = time.monotonic()
        self.n += 1
        print(f"[{self.n:2}] {text}  (+{now - self.last:.2f} s)", flush=True)
        self.last = now

    def detail(self, text: str) -> None:
        print("     " + text.rstrip().replace("\n", "\n     "), flush=True)

    def total(self) -> float:
        return time.monotonic() - self.start


def firewall_route(topo: Topology) -> str | None:
    route = kernel_routes(topo, "firewall").get(host_prefix(ATTACKER))
    if route is None or route.type != "blackhole":
        return None
    return f"{route.type} {host_prefix(ATTACKER)} proto {route.protocol}"


def run(step: Steps) -> bool:
    with ExitStack() as stack:
        topo = stack.enter_context(Topology(urpf="loose"))
        stack.enter_context(ServerListener(topo))
        firewall = stack.enter_context(Frr(topo.ns("firewall"), {d: EXAMPLES / "firewall" / f"{d}.conf"
                                                                  for d in ("zebra", "staticd", "bgpd")}))
        stack.enter_context(Frr(topo.ns("injector"), {d: EXAMPLES / "injector" / f"{d}.conf" for d in ("zebra", "bgpd")}))
        daemon = stack.enter_context(F2bBgp(topo.ns("injector"), DAEMON_CONFIG))
        step(f"lab up ({topo.prefix}*): attacker {ATTACKER}, server {SERVER}; firewall FRR (frr-examples/firewall, "
             "loose uRPF); injector FRR (frr-examples/injector) + f2b-bgp serve (kernel backend)")

        peer = FrrPeer(firewall)
        wait_until(lambda: peer.established(HOSTS["injector"]["4"]), 60, "BGP session firewall-injector")
        step("BGP session firewall <-> injector Established")
        before = probe(topo, SERVER)
        step(f"attacker -> server before any ban: {before}")
        if not before.tcp:
            print("demo FAILED: the attacker cannot reach the server even before a ban", file=sys.stderr)
            return False

        jail_local = JAIL_LOCAL.replace("{queue}", str(daemon.workdir / "fail2ban.queue"))
        f2b = stack.enter_context(Fail2banServer(jail_local, log_files=["routeros.log"]))
        step("fail2ban-server up: jail routeros = shipped filter routeros-auth + shipped action bgp-blackhole")

        append(f2b.workdir / "routeros.log", [routeros_line(ATTACKER) for _ in range(MAXRETRY)])
        wait_until(lambda: ATTACKER in f2b.banned("routeros"), 30, "fail2ban ban")
        step(f"{MAXRETRY} x 'login failure for user admin from {ATTACKER} via ssh' -> fail2ban jail routeros bans it")
        wait_until(lambda: daemon.call("list")["bans"], 10, "the daemon applied the queued ban")
        step.detail("f2b-bgp list:\n" + daemon.cli("list").stdout)

        route = wait_until(lambda: firewall_route(topo), 15, "blackhole on the firewall")
        step(f"firewall kernel: {route} (learnt by BGP with 65535:666 from the injector)")
        during = probe(topo, SERVER)
        step(f"attacker -> server while banned: {during}")
        if during.icmp or during.tcp:
            print("demo FAILED: the attacker still reaches the server", file=sys.stderr)
            return False

        f2b.client("set", "routeros", "unbanip", ATTACKER)
        step(f"fail2ban-client set routeros unbanip {ATTACKER}")
        wait_until(lambda: not firewall_route(topo), 15, "withdraw on the firewall")
        step("f2b-bgp withdrew the route; the firewall dropped it")
        after = wait_until(lambda: (lambda r: r if r.tcp else None)(probe(topo, SERVER)), 10, "traffic flows again")
        step(f"attacker -> server after the unban: {after}")
    step("lab torn down: fail2ban, f2b-bgp, FRR stopped by PID; namespaces deleted")
    return True


def main() -> int:
    if why := fail2ban_missing():
        print(f"demo: {why} (make demo installs it)", file=sys.stderr)
        return 1
    step = Steps()
    ok = run(step)
    print(f"demo {'passed' if ok else 'FAILED'} in {step.total():.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
