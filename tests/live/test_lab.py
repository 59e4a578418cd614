"""The live-test lab itself: namespaces, traffic, uRPF counters, and each receiver daemon with ExaBGP.

The daemon configs here are minimal self-test data (accept everything, blackhole it), not the shipped
snippets; those are loaded byte for byte by the scenario tests through the same fixtures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.asserts import assert_established, assert_kernel_blackhole, assert_no_route, assert_route
from tests.lab.bird import Bird
from tests.lab.exabgp import Exabgp, exabgp_config
from tests.lab.fixtures import lab_stack, server_listener, topology, topology_factory  # noqa: F401 (fixtures)
from tests.lab.frr import Frr
from tests.lab.gobgp import Gobgp
from tests.lab.netns import HOSTS, Topology, extra_attacker, host_prefix, live_namespaces
from tests.lab.openbgpd import OpenBgpd
from tests.lab.peers import BLACKHOLE, Peer, peer_for
from tests.lab.probe import (FIREWALL_RPF_COUNTER, SERVER_ECHO_COUNTER, ServerListener, counter_delta, nstat,
                             probe)

FAMILIES = ["4", "6"]
FW, INJ = HOSTS["firewall"], HOSTS["injector"]
NEXTHOP = {"4": INJ["4"], "6": INJ["6"]}

FRR_ZEBRA = "hostname lab-fw\n"
FRR_STATICD = "hostname lab-fw\nip route 192.0.2.1/32 Null0\nipv6 route 100::1/128 Null0\n"
FRR_BGPD = f"""hostname lab-fw
route-map LAB-IN4 permit 10
 set ip next-hop 192.0.2.1
exit
route-map LAB-IN6 permit 10
 set ipv6 next-hop global 100::1
exit
router bgp 65000
 bgp router-id {FW['4']}
 no bgp ebgp-requires-policy
 neighbor {INJ['4']} remote-as 65001
 neighbor {INJ['4']} timers connect 5
 neighbor {INJ['4']} disable-connected-check
 address-family ipv4 unicast
  neighbor {INJ['4']} soft-reconfiguration inbound
  neighbor {INJ['4']} route-map LAB-IN4 in
 exit-address-family
 address-family ipv6 unicast
  neighbor {INJ['4']} activate
  neighbor {INJ['4']} soft-reconfiguration inbound
  neighbor {INJ['4']} route-map LAB-IN6 in
 exit-address-family
exit
"""
BIRD_CONF = f"""log stderr all;
router id {FW['4']};
protocol device {{ }}
protocol kernel kernel4 {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}
protocol kernel kernel6 {{ ipv6 {{ import none; export where source = RTS_BGP; }}; }}
filter lab_in {{ dest = RTD_BLACKHOLE; accept; }}
protocol bgp injector {{
  local {FW['4']} as 65000;
  neighbor {INJ['4']} as 65001;
  connect retry time 5;
  ipv4 {{ import filter lab_in; export none; }};
  ipv6 {{ import filter lab_in; export none; }};
}}
"""
OPENBGPD_CONF = f"""AS 65000
router-id {FW['4']}
connect-retry 5
neighbor {INJ['4']} {{
\tremote-as 65001
\tannounce IPv4 unicast
\tannounce IPv6 unicast
}}
allow from {INJ['4']}
deny to any
"""
GOBGP_CONF = f"""[global.config]
  as = 65000
  router-id = "{FW['4']}"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{INJ['4']}"
    peer-as = 65001
  [neighbors.timers.config]
    connect-retry = 5
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def frr(topo: Topology, d: Path) -> Frr:
    return Frr(topo.ns("firewall"), {"zebra": write(d, "zebra.conf", FRR_ZEBRA),
                                     "staticd": write(d, "staticd.conf", FRR_STATICD),
                                     "bgpd": write(d, "bgpd.conf", FRR_BGPD)})


RECEIVERS: dict[str, tuple[Callable[[Topology, Path], object], bool]] = {  # name -> (factory, installs kernel routes)
    "frr": (frr, True),
    "bird": (lambda topo, d: Bird(topo.ns("firewall"), write(d, "bird.conf", BIRD_CONF)), True),
    "openbgpd": (lambda topo, d: OpenBgpd(topo.ns("firewall"), write(d, "bgpd.conf", OPENBGPD_CONF)), False),
    "gobgp": (lambda topo, d: Gobgp(topo.ns("firewall"), write(d, "gobgpd.toml", GOBGP_CONF)), False),
}


def test_010_topology_up_and_down_leaves_no_namespace() -> None:
    with Topology() as topo:
        names = topo.namespaces
        assert set(names) <= set(live_namespaces())
    assert not set(names) & set(live_namespaces())
    with pytest.raises(RuntimeError, match="boom"), Topology() as topo:  # cleaned up when the body fails
        names = topo.namespaces
        raise RuntimeError("boom")
    assert not set(names) & set(live_namespaces())


@pytest.mark.parametrize("family", FAMILIES)
def test_020_traffic_flows_attacker_to_server(topology: Topology, server_listener: ServerListener,
                                              family: str) -> None:
    assert probe(topology, HOSTS["server"][family]) == (True, True)


def test_021_extra_attacker_addresses_reach_the_server(topology_factory: Callable[..., Topology]) -> None:
    topo = topology_factory(extra_attackers=3)
    with ServerListener(topo):
        for family in FAMILIES:
            assert probe(topo, HOSTS["server"][family], source=extra_attacker(2, family)) == (True, True)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("urpf", [None, "loose"])
def test_030_blackhole_by_hand(topology_factory: Callable[..., Topology], family: str, urpf: str | None) -> None:
    """Without uRPF the echo reaches the server and only replies die; with uRPF it dies on ingress."""
    topo = topology_factory(urpf=urpf)
    server, attacker = HOSTS["server"][family], HOSTS["attacker"][family]
    with ServerListener(topo):
        assert probe(topo, server) == (True, True)
        topo.run("firewall", ["ip", f"-{family}", "route", "add", "blackhole", host_prefix(attacker)])
        before_srv, before_fw, nft_before = nstat(topo, "server"), nstat(topo, "firewall"), topo.urpf_drops()
        assert probe(topo, server) == (False, False)
        echoes = counter_delta(before_srv, nstat(topo, "server"), SERVER_ECHO_COUNTER[family])
        rpf = counter_delta(before_fw, nstat(topo, "firewall"), FIREWALL_RPF_COUNTER)[FIREWALL_RPF_COUNTER]
        dropped_on_ingress = topo.urpf_drops() - nft_before + rpf
        assert (echoes[SERVER_ECHO_COUNTER[family]], dropped_on_ingress >= 2) == ((0, True) if urpf else (1, False))


@pytest.mark.parametrize("receiver", sorted(RECEIVERS))
def test_040_receiver_establishes_with_exabgp_and_gets_routes(topology: Topology, lab_stack: contextlib.ExitStack,
                                                              tmp_path: Path, receiver: str) -> None:
    factory, kernel = RECEIVERS[receiver]
    conf = exabgp_config(tmp_path, neighbor=FW["4"], local_address=INJ["4"], router_id=INJ["4"],
                         local_as=65001, peer_as=65000)
    exa = lab_stack.enter_context(Exabgp(topology.ns("injector"), conf, listen=INJ["4"], workdir=tmp_path))
    peer: Peer = peer_for(lab_stack.enter_context(factory(topology, tmp_path)))
    assert_established(peer, INJ["4"])
    exa.send(*(f"announce route {host_prefix(HOSTS['attacker'][f])} next-hop {NEXTHOP[f]} community [{BLACKHOLE}]"
               for f in FAMILIES))
    for family in FAMILIES:
        prefix = host_prefix(HOSTS["attacker"][family])
        assert_route(peer, prefix, communities={BLACKHOLE})
        if kernel:
            assert_kernel_blackhole(topology, "firewall", prefix, daemon=peer)
    exa.send(f"withdraw route {host_prefix(HOSTS['attacker']['4'])} next-hop {NEXTHOP['4']}")
    assert_no_route(peer, host_prefix(HOSTS["attacker"]["4"]))
