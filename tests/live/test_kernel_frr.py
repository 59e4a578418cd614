"""Issue 3 scenario: f2b-bgp (kernel backend) + FRR on the injector, an FRR firewall dropping the attacker.

| step | prefix | injector kernel | firewall |
|---|---|---|---|
| 020 | 203.0.113.66/32, 2001:db8:203::66/128 | blackhole proto 201 | blackhole with 65535:666; attacker's traffic dropped |
| 030 | 198.51.100.130 (protected), 203.0.113.0/24 | refused by f2b-bgp with exit 4 | nothing |
| 031 | the same (IPv6 as a /56), written into the kernel by hand | present | FRR's injector policy never announces them |
| 040 | withdraw | gone | gone, traffic flows |
| 050 | ban with bantime 3 | gone by itself | gone |
| 060 | daemon restart, a route lost while down | restored | present throughout for the other |

The FRR configs are the shipped files in frr-examples/, byte for byte; uRPF (loose) is on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode
from tests.lab.asserts import assert_established, assert_kernel_blackhole, assert_no_kernel_route, assert_route
from tests.lab.f2bbgp import FW1, F2bBgp, lab_config
from tests.lab.frr import Frr
from tests.lab.netns import HOSTS, Topology, host_prefix
from tests.lab.peers import BLACKHOLE, FrrPeer, kernel_routes
from tests.lab.probe import ServerListener, probe
from tests.lab.wait import wait_until

EXAMPLES = Path(__file__).parents[2] / "frr-examples"
FAMILIES = ("4", "6")
CONFIG = lab_config(rest=f"""[bgp]
local_as = 65001
router_id = "198.51.100.2"
{FW1}""")


@dataclass
class Lab:
    topo: Topology
    injector: Frr
    firewall: FrrPeer
    daemon: F2bBgp

    def attacker_reaches_server(self, family: str) -> bool:
        return probe(self.topo, HOSTS["server"][family]).tcp


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    firewall_files = {d: EXAMPLES / "firewall" / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")}
    injector_files = {d: EXAMPLES / "injector" / f"{d}.conf" for d in ("zebra", "bgpd")}
    with Topology(urpf="loose") as topo, ServerListener(topo), \
            Frr(topo.ns("firewall"), firewall_files) as firewall, Frr(topo.ns("injector"), injector_files) as injector, \
            F2bBgp(topo.ns("injector"), CONFIG) as daemon:
        yield Lab(topo, injector, FrrPeer(firewall), daemon)


def ours(lab: Lab) -> set[str]:
    return {p for p, r in kernel_routes(lab.topo, "injector").items() if r.protocol == "201"}


def test_010_session_up(lab: Lab) -> None:
    assert_established(lab.firewall, HOSTS["injector"]["4"], timeout=30)
    for family in FAMILIES:
        assert lab.attacker_reaches_server(family), f"IPv{family}: the attacker must reach the server before any ban"


@pytest.mark.parametrize("family", FAMILIES)
def test_020_ban_reaches_the_firewall_and_drops_the_attacker(lab: Lab, family: str) -> None:
    attacker = HOSTS["attacker"][family]
    result = lab.daemon.cli("ban", attacker, "--jail", "sshd", "--reason", "live test")
    assert result.returncode == ExitCode.OK, result.stderr
    assert host_prefix(attacker) in ours(lab)
    assert_route(lab.firewall, attacker, communities={BLACKHOLE})
    assert_kernel_blackhole(lab.topo, "firewall", attacker, daemon=lab.firewall)
    assert probe(lab.topo, HOSTS["server"][family]) == (False, False)


@pytest.mark.parametrize("text, guard", [("198.51.100.130", "protected"), ("203.0.113.0/24", "length"),
                                         ("2001:db8:2::10", "protected"), ("2001:db8:203::/64", "length")])
def test_030_protected_and_short_prefixes_are_refused(lab: Lab, text: str, guard: str) -> None:
    result = lab.daemon.cli("ban", text)
    assert result.returncode == ExitCode.REFUSED and f"refused: {guard}:" in result.stderr


def test_031_frr_policy_refuses_them_when_injected_by_hand(lab: Lab) -> None:
    # the shipped injector accepts IPv6 /64 (the reference config widens IPv6 bans to it), not /56
    by_hand = ["198.51.100.130/32", "203.0.113.0/24", "2001:db8:2::10/128", "2001:db8:203::/56"]
    for prefix in by_hand:
        lab.topo.run("injector", ["ip", "route", "add", "blackhole", prefix, "proto", "201"])
    try:
        def imported() -> bool:
            kernel = lab.injector.vtysh_json("show ip route kernel json") | lab.injector.vtysh_json("show ipv6 route kernel json")
            return all(p in kernel for p in by_hand)

        wait_until(imported, 10, "zebra imported the hand-made routes")
        # a ban after them: UPDATEs are ordered, so once it arrives the others would have too
        lab.daemon.cli("ban", "203.0.113.99")
        assert_route(lab.firewall, "203.0.113.99", communities={BLACKHOLE})
        advertised = lab.injector.vtysh("show bgp ipv4 unicast neighbors 198.51.100.1 advertised-routes") + \
            lab.injector.vtysh("show bgp ipv6 unicast neighbors 198.51.100.1 advertised-routes")
        rib = lab.firewall.rib()
        for prefix in by_hand:
            assert prefix not in advertised, f"{prefix} was announced:\n{advertised}"
            assert prefix not in rib, f"{prefix} reached the firewall"
    finally:
        lab.daemon.cli("withdraw", "203.0.113.99")
        for prefix in by_hand:
            lab.topo.run("injector", ["ip", "route", "del", prefix, "proto", "201"], check=False)


@pytest.mark.parametrize("family", FAMILIES)
def test_040_withdraw_restores_traffic(lab: Lab, family: str) -> None:
    attacker = HOSTS["attacker"][family]
    assert "removed sshd" in lab.daemon.cli("withdraw", attacker).stdout
    assert_no_kernel_route(lab.topo, "firewall", attacker, daemon=lab.firewall)
    assert host_prefix(attacker) not in ours(lab)
    wait_until(lambda: lab.attacker_reaches_server(family), 10, f"IPv{family}: traffic flows again")


@pytest.mark.parametrize("family", FAMILIES)
def test_050_expiry_withdraws_by_itself(lab: Lab, family: str) -> None:
    attacker = HOSTS["attacker"][family]
    assert lab.daemon.cli("ban", attacker, "--bantime", "3").returncode == ExitCode.OK
    assert_kernel_blackhole(lab.topo, "firewall", attacker, daemon=lab.firewall)
    assert_no_kernel_route(lab.topo, "firewall", attacker, timeout=15, daemon=lab.firewall)
    assert lab.daemon.cli("list", "--json").stdout.strip() == "[]"


def test_060_daemon_restart_keeps_and_reconciles_state(lab: Lab) -> None:
    for family in FAMILIES:
        lab.daemon.cli("ban", HOSTS["attacker"][family], "--jail", "sshd")
        assert_kernel_blackhole(lab.topo, "firewall", HOSTS["attacker"][family], daemon=lab.firewall)
    lab.daemon.stop()
    v4 = host_prefix(HOSTS["attacker"]["4"])
    lab.topo.run("injector", ["ip", "route", "del", v4, "proto", "201"])  # lost while the daemon is down
    assert_no_kernel_route(lab.topo, "firewall", v4, daemon=lab.firewall)
    assert_kernel_blackhole(lab.topo, "firewall", HOSTS["attacker"]["6"])  # stopping the daemon withdraws nothing
    lab.daemon.start()
    for family in FAMILIES:
        assert_kernel_blackhole(lab.topo, "firewall", HOSTS["attacker"][family], daemon=lab.firewall)
        assert probe(lab.topo, HOSTS["server"][family]) == (False, False)
