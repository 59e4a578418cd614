"""One adapter per receiver with a common interface, so tests parametrise over daemon x family.

established(peer_address) -> bool, rib() -> {prefix: Route} (post-policy, accepted routes),
log_tail(). Communities are normalised to "ASN:VALUE" strings ("65535:666").
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Protocol

from .bird import Bird
from .frr import Frr
from .gobgp import Gobgp
from .netns import Topology
from .openbgpd import OpenBgpd

WELL_KNOWN = {  # RFC 1997 / 7999 / 8326 / 7611 names as FRR (camelCase or dashed) and OpenBGPD print them
    "blackhole": "65535:666", "noexport": "65535:65281", "noadvertise": "65535:65282",
    "noexportsubconfed": "65535:65283", "localas": "65535:65283", "nopeer": "65535:65284",
    "gracefulshutdown": "65535:0", "acceptown": "65535:1", "llgrstale": "65535:6", "nollgr": "65535:7",
}
BLACKHOLE = "65535:666"


def community(value: object) -> str:
    """4294902426, "BLACKHOLE", "blackhole", "noExport", "(65535,666)", "65535:666" -> "65535:666"."""
    if isinstance(value, int):
        return f"{value >> 16}:{value & 0xFFFF}"
    text = str(value).strip()
    if text.isdigit():
        return community(int(text))
    if m := re.fullmatch(r"\(?\s*(\d+)\s*[,:]\s*(\d+)\s*\)?", text):
        return f"{int(m[1])}:{int(m[2])}"
    key = re.sub(r"[-_ ]", "", text).lower()
    return WELL_KNOWN.get(key, text)


def prefix_of(text: str) -> str:
    """Canonical prefix text (host addresses get /32 or /128)."""
    return str(ipaddress.ip_network(text, strict=False))


@dataclass(frozen=True)
class Route:
    nexthop: str                      # post-policy next hop as the daemon reports it ("blackhole" for BIRD drops)
    communities: frozenset[str] = field(default_factory=frozenset)

    def __str__(self) -> str:
        return f"nexthop={self.nexthop or '-'} communities={','.join(sorted(self.communities)) or '-'}"


class Peer(Protocol):
    name: str

    def established(self, peer_address: str) -> bool: ...
    def rib(self) -> dict[str, Route]: ...
    def log_tail(self, lines: int = 30) -> str: ...


class FrrPeer:
    name = "frr"

    def __init__(self, frr: Frr) -> None:
        self.daemon = frr

    def established(self, peer_address: str) -> bool:
        state = self.daemon.vtysh_json(f"show bgp neighbors {peer_address} json")
        return state.get(peer_address, {}).get("bgpState") == "Established"

    def rib(self) -> dict[str, Route]:
        routes: dict[str, Route] = {}
        for afi in ("ipv4", "ipv6"):
            table = self.daemon.vtysh_json(f"show bgp {afi} unicast json detail").get("routes", {})
            for prefix, paths in table.items():
                paths = paths.get("paths", []) if isinstance(paths, dict) else paths  # 8.4 lists paths directly
                best = [p for p in paths if p.get("bestpath")] or [p for p in paths if p.get("valid")]
                if best:
                    routes[prefix_of(prefix)] = _frr_route(best[0])
        return routes

    def received_routes(self, peer_address: str) -> dict[str, Route]:
        """Prefixes of the Adj-RIB-In, pre-policy: denied ones too (needs `soft-reconfiguration inbound`).

        FRR 8.4 quirk: for an accepted prefix it shows the post-policy next hop, so trust the keys only.
        """
        routes: dict[str, Route] = {}
        for afi in ("ipv4", "ipv6"):
            out = self.daemon.vtysh_json(f"show bgp {afi} unicast neighbors {peer_address} received-routes json")
            for prefix, path in out.get("receivedRoutes", {}).items():
                routes[prefix_of(prefix)] = Route(path.get("nextHop", path.get("nextHopGlobal", "")))
        return routes

    def log_tail(self, lines: int = 30) -> str:
        return self.daemon.log_tail(lines)


def _frr_route(path: dict) -> Route:
    hops = [h.get("ip", "") for h in path.get("nexthops", [])]
    names = path.get("community", {}).get("list") or path.get("community", {}).get("string", "").split()
    return Route(hops[0] if hops else "", frozenset(community(c) for c in names))


class BirdPeer:
    name = "bird"

    def __init__(self, bird: Bird) -> None:
        self.daemon = bird

    def established(self, peer_address: str) -> bool:
        blocks = self.daemon.birdc("show protocols all").split("\n\n")
        return any(f"Neighbor address: {peer_address}" in b and re.search(r"BGP state:\s+Established", b)
                   for b in blocks)

    def rib(self) -> dict[str, Route]:
        """Best routes of `show route all`; nexthop is the route's destination (blackhole/...) or via-address."""
        return parse_bird_routes(self.daemon.birdc("show route all"))

    def log_tail(self, lines: int = 30) -> str:
        return self.daemon.log_tail(lines)


def parse_bird_routes(text: str) -> dict[str, Route]:
    """`<prefix> <dest> [<proto> ...] * (pref)` lines, tab-indented attributes below each route."""
    found: dict[str, tuple[str, set[str]]] = {}
    prefix, best = "", False
    for line in text.splitlines():
        if line.startswith("\t"):
            attr = line.strip()
            if best and attr.startswith("BGP.community:"):
                found[prefix][1].update(f"{a}:{b}" for a, b in re.findall(r"\((\d+),(\d+)\)", attr))
            elif best and attr.startswith("via ") and found[prefix][0] == "unicast":
                found[prefix] = (attr.split()[1], found[prefix][1])
        elif "[" in line:
            words = line.split()
            if not line[0].isspace():
                prefix, words = prefix_of(words[0]), words[1:]
            best = bool(re.search(r"\]\s+\*", line))
            if best:
                dest = words[1] if words[0] == "via" else words[0]
                found[prefix] = (dest, set())
    return {p: Route(hop, frozenset(comms)) for p, (hop, comms) in found.items()}


class OpenBgpdPeer:
    name = "openbgpd"

    def __init__(self, bgpd: OpenBgpd) -> None:
        self.daemon = bgpd

    def established(self, peer_address: str) -> bool:
        neighbors = self.daemon.bgpctl("show", "neighbor").get("neighbors", [])
        return any(n.get("remote_addr") == peer_address and n.get("state") == "Established" for n in neighbors)

    def rib(self) -> dict[str, Route]:
        """Loc-RIB best paths (`bgpctl -j show rib detail`); nexthop is the exit next hop."""
        routes: dict[str, Route] = {}
        for entry in self.daemon.bgpctl("show", "rib", "detail").get("rib", []):
            prefix = prefix_of(entry["prefix"])
            if entry.get("best") or prefix not in routes:
                routes[prefix] = Route(
                    entry.get("exit_nexthop", ""), frozenset(community(c) for c in entry.get("communities", [])))
        return routes

    def log_tail(self, lines: int = 30) -> str:
        return self.daemon.log_tail(lines)


class GobgpPeer:
    name = "gobgp"

    def __init__(self, gobgp: Gobgp) -> None:
        self.daemon = gobgp

    def established(self, peer_address: str) -> bool:
        for n in self.daemon.gobgp("neighbor") or []:
            if n.get("state", {}).get("neighbor_address") == peer_address or \
               n.get("conf", {}).get("neighbor_address") == peer_address:
                return n.get("state", {}).get("session_state") in (6, "established", "ESTABLISHED")
        return False

    def rib(self) -> dict[str, Route]:
        routes: dict[str, Route] = {}
        for afi in ("ipv4", "ipv6"):
            for prefix, paths in (self.daemon.gobgp("global", "rib", "-a", afi) or {}).items():
                best = [p for p in paths if p.get("best")] or paths
                if best:
                    routes[prefix_of(prefix)] = _gobgp_route(best[0])
        return routes

    def log_tail(self, lines: int = 30) -> str:
        return self.daemon.log_tail(lines)


def _gobgp_route(path: dict) -> Route:
    nexthop, comms = "", frozenset()
    for attr in path.get("attrs", []):
        if attr.get("type") in (3, 14) and attr.get("nexthop"):
            nexthop = attr["nexthop"]
        elif attr.get("type") == 8:
            comms = frozenset(community(c) for c in attr.get("communities", []))
    return Route(nexthop, comms)


def peer_for(daemon: Frr | Bird | OpenBgpd | Gobgp) -> Peer:
    """The adapter for a running daemon fixture."""
    adapters = {Frr: FrrPeer, Bird: BirdPeer, OpenBgpd: OpenBgpdPeer, Gobgp: GobgpPeer}
    return adapters[type(daemon)](daemon)  # type: ignore[abstract]


@dataclass(frozen=True)
class KernelRoute:
    type: str        # unicast, blackhole, unreachable, prohibit, local...
    protocol: str    # boot, kernel, static, bgp, bird, 201...
    gateway: str = ""
    dev: str = ""
    metric: int = 0


def kernel_routes(topology: Topology, node: str, table: str = "main") -> dict[str, KernelRoute]:
    """IPv4 + IPv6 routes of one table in a node, keyed by canonical prefix (best metric wins)."""
    routes: dict[str, KernelRoute] = {}
    for family in ("-4", "-6"):
        for r in topology.ip_json(node, [family, "route", "show", "table", table]):
            dst = r["dst"]
            dst = ("0.0.0.0/0" if family == "-4" else "::/0") if dst == "default" else prefix_of(dst)
            route = KernelRoute(r.get("type", "unicast"), str(r.get("protocol", "boot")), r.get("gateway", ""),
                                r.get("dev", ""), int(r.get("metric", 0)))
            if dst not in routes or route.metric < routes[dst].metric:
                routes[dst] = route
    return routes
