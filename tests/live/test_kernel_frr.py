"""Issue 3 scenario: f2b-bgp (kernel backend) + FRR on the injector, FRR firewall dropping the attacker.

| step | prefix | injector kernel | firewall |
|---|---|---|---|
| 020 | 203.0.113.66/32, 2001:db8:203::66/128 | blackhole proto 201 | blackhole, attacker's TCP to the server fails |
| 030 | 198.51.100.130 (protected), 203.0.113.0/24 | refused by f2b-bgp; by hand: FRR denies | nothing |
| 040 | withdraw | gone | gone, traffic flows |
| 050 | ban with bantime 3 | gone by itself | gone |
| 060 | daemon restart, route lost while down | restored | present throughout |

The FRR configs are the shipped files in frr-examples/ byte for byte.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode

from .daemon_env import F2bBgpDaemon, kernel_routes, wait_until
from .topology import SERVER4, SERVER6, Frr, TcpServer, Topology

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "frr-examples"
ATTACKERS = {"ipv4": ("203.0.113.66", "203.0.113.66/32", SERVER4), "ipv6": ("2001:db8:203::66", "2001:db8:203::66/128", SERVER6)}
CONFIG = """
[daemon]
socket = "{dir}/api.sock"
database = "{dir}/state.db"
retry_interval = 0.2
[guards]
protected = [{{ prefix = "198.51.100.0/24", name = "our network" }}, "2001:db8:1::/64", "2001:db8:2::/64"]
allow_special = ["203.0.113.0/24", "2001:db8:203::/48"]
[bgp]
local_as = 65001
router_id = "198.51.100.2"
[[bgp.peers]]
name = "fw1"
address = "198.51.100.1"
asn = 65000
"""


class Lab:
    def __init__(self, topo: Topology, injector: Frr, firewall: Frr, daemon: F2bBgpDaemon) -> None:
        self.topo, self.injector, self.firewall, self.daemon = topo, injector, firewall, daemon

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "f2b_bgp", "--socket", str(self.daemon.socket), *args],
                              capture_output=True, text=True, timeout=30)

    def firewall_routes(self) -> dict[str, str]:
        return kernel_routes(self.topo.ns["firewall"])

    def assert_firewall_blackhole(self, prefix: str, present: bool = True) -> None:
        def state() -> bool:
            return (self.firewall_routes().get(prefix) == "blackhole") == present

        try:
            wait_until(state, 15, f"{prefix} {'blackholed' if present else 'gone'} on the firewall")
        except AssertionError as err:
            raise AssertionError(f"{err}\nfirewall kernel: {self.firewall_routes()}\n"
                                 f"firewall bgp: {self.firewall.vtysh('show bgp ipv4 unicast')}"
                                 f"{self.firewall.vtysh('show bgp ipv6 unicast')}\n{self.firewall.log_tail(10)}") from None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    work = tmp_path_factory.mktemp("kernel-frr")
    (work / "c.toml").write_text(CONFIG.format(dir=work))
    with Topology() as topo, TcpServer(topo.ns["server"]):
        firewall_configs = {d: EXAMPLES / "firewall" / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")}
        injector_configs = {d: EXAMPLES / "injector" / f"{d}.conf" for d in ("zebra", "bgpd")}
        with Frr(topo.ns["firewall"], firewall_configs) as firewall, \
                Frr(topo.ns["injector"], injector_configs) as injector, \
                F2bBgpDaemon(topo.ns["injector"], work / "c.toml", work / "api.sock", work / "daemon.log") as daemon:
            yield Lab(topo, injector, firewall, daemon)


def test_010_session_up(lab: Lab) -> None:
    wait_until(lambda: lab.firewall.established("198.51.100.2"), 30, "BGP session firewall-injector Established")
    for family, (address, _, server) in ATTACKERS.items():
        assert lab.topo.reachable(server), f"{family}: the attacker must reach the server before any ban"


@pytest.mark.parametrize("family", ATTACKERS)
def test_020_ban_reaches_the_firewall_and_drops_the_attacker(lab: Lab, family: str) -> None:
    address, prefix, server = ATTACKERS[family]
    result = lab.cli("ban", address, "--jail", "sshd", "--reason", "live test")
    assert result.returncode == ExitCode.OK, result.stderr
    assert kernel_routes(lab.daemon.ns, protocol=201).get(prefix) == "blackhole"
    lab.assert_firewall_blackhole(prefix)
    received = lab.firewall.json(f"show bgp {family} unicast {prefix} json")
    assert "blackhole" in str(received.get("paths", [{}])[0].get("community", {}).get("string", "")), received
    assert not lab.topo.reachable(server), f"{family}: attacker's traffic still reaches the server"


@pytest.mark.parametrize("text, guard", [("198.51.100.130", "protected"), ("203.0.113.0/24", "length"),
                                         ("2001:db8:2::10", "protected"), ("2001:db8:203::/64", "length")])
def test_030_protected_and_short_prefixes_are_refused(lab: Lab, text: str, guard: str) -> None:
    result = lab.cli("ban", text)
    assert result.returncode == ExitCode.REFUSED and f"refused: {guard}:" in result.stderr


def test_031_frr_policy_refuses_them_when_injected_by_hand(lab: Lab) -> None:
    inj = lab.daemon.ns
    by_hand = ["198.51.100.130/32", "203.0.113.0/24", "2001:db8:2::10/128", "2001:db8:203::/64"]
    for prefix in by_hand:
        inj.run(["ip", "route", "add", "blackhole", prefix, "proto", "201"])
    try:
        kernel = lambda: lab.injector.json("show ip route kernel json") | lab.injector.json("show ipv6 route kernel json")
        wait_until(lambda: all(p in kernel() for p in by_hand), 10, "zebra imported the hand-made routes")
        lab.assert_firewall_blackhole(ATTACKERS["ipv4"][1])  # a route that was accepted before is still there
        advertised = lab.injector.vtysh("show bgp ipv4 unicast neighbors 198.51.100.1 advertised-routes") + \
            lab.injector.vtysh("show bgp ipv6 unicast neighbors 198.51.100.1 advertised-routes")
        received = lab.firewall.json("show bgp ipv4 unicast json").get("routes", {}) | \
            lab.firewall.json("show bgp ipv6 unicast json").get("routes", {})
        for prefix in by_hand:
            assert prefix not in advertised, f"{prefix} was announced:\n{advertised}"
            assert prefix not in received, f"{prefix} reached the firewall"
    finally:
        for prefix in by_hand:
            inj.run(["ip", "route", "del", prefix, "proto", "201"], check=False)


@pytest.mark.parametrize("family", ATTACKERS)
def test_040_withdraw_restores_traffic(lab: Lab, family: str) -> None:
    address, prefix, server = ATTACKERS[family]
    assert "removed sshd" in lab.cli("withdraw", address).stdout
    lab.assert_firewall_blackhole(prefix, present=False)
    assert prefix not in kernel_routes(lab.daemon.ns, protocol=201)
    wait_until(lambda: lab.topo.reachable(server), 10, f"{family}: traffic flows again")


@pytest.mark.parametrize("family", ATTACKERS)
def test_050_expiry_withdraws_by_itself(lab: Lab, family: str) -> None:
    address, prefix, _ = ATTACKERS[family]
    assert lab.cli("ban", address, "--bantime", "3").returncode == ExitCode.OK
    lab.assert_firewall_blackhole(prefix)
    lab.assert_firewall_blackhole(prefix, present=False)
    assert lab.cli("list", "--json").stdout.strip() == "[]"


def test_060_daemon_restart_keeps_and_reconciles_state(lab: Lab) -> None:
    for address, prefix, _ in ATTACKERS.values():
        lab.cli("ban", address, "--jail", "sshd")
        lab.assert_firewall_blackhole(prefix)
    lab.daemon.stop()
    v4 = ATTACKERS["ipv4"][1]
    lab.daemon.ns.run(["ip", "route", "del", v4, "proto", "201"])  # lost while the daemon is down
    lab.assert_firewall_blackhole(v4, present=False)
    lab.assert_firewall_blackhole(ATTACKERS["ipv6"][1])  # stopping the daemon withdraws nothing
    lab.daemon.start()
    for _, prefix, server in ATTACKERS.values():
        lab.assert_firewall_blackhole(prefix)
        assert not lab.topo.reachable(server)
