"""The firewall's view of the config: what every peering snippet is rendered from."""

from __future__ import annotations

from dataclasses import dataclass

from netaddr import IPAddress, IPNetwork

from f2b_bgp.aggregation import AggregationPolicy
from f2b_bgp.config import Config, Peer, discard_next_hops
from f2b_bgp.defaults import BLACKHOLE
from f2b_bgp.errors import ConfigError
from f2b_bgp.guards import ProtectedPrefix


@dataclass(frozen=True)
class Placeholder:
    """An example value in a shipped snippet and the config key it comes from."""

    value: str
    key: str
    meaning: str


@dataclass(frozen=True)
class Session:
    """One injector-firewall session, seen from the firewall."""

    firewall: IPAddress
    firewall_as: int
    injector: IPAddress
    injector_as: int
    index: int  # position in bgp.peers, for naming config keys
    name: str

    def router_id(self, keyword: str, daemon: str, end: str = "") -> str:
        """The router-id line: the firewall's session address, which must be IPv4 to serve."""
        if self.firewall.version != 4:
            return f"# no IPv4 session address to use as router id: {daemon} picks one"
        return f"{keyword} {self.firewall}{end}"


@dataclass(frozen=True)
class Peering:
    sessions: tuple[Session, ...]
    # what the firewall refuses: the guards' protected, peer and next-hop prefixes (the discard
    # next-hops among them), minimal (entries inside another entry are left out)
    refused: tuple[ProtectedPrefix, ...]
    discard: tuple[ProtectedPrefix, ...]
    min_length_ipv4: int
    min_length_ipv6: int
    communities: tuple[str, ...]  # BLACKHOLE first
    discard_ipv4: IPAddress
    discard_ipv6: IPAddress
    prefix_limit: int
    injector_as: int
    injector_router_id: IPAddress
    aggregation: AggregationPolicy  # its lengths are within min_length_* (check-config): named in the headers

    def injector_id(self, daemon: str) -> str:
        """The injector's router id for DAEMON's config; 0.0.0.0 (the config's default) is no identifier."""
        if self.injector_router_id.version != 4 or int(self.injector_router_id) == 0:
            raise ConfigError([f"bgp.router_id: an IPv4 address other than 0.0.0.0 is required to render the "
                               f"{daemon} config, not {self.injector_router_id}"])
        return str(self.injector_router_id)

    def refused_for(self, version: int) -> tuple[ProtectedPrefix, ...]:
        return tuple(p for p in self.refused if p.prefix.version == version)

    def session_for(self, peer: str | None) -> Session:
        """The session a firewall-side snippet is for: the only peer, or the one named."""
        if peer is not None:
            for session in self.sessions:
                if session.name == peer:
                    return session
            raise ConfigError([f"bgp.peers: no peer named {peer!r}"])
        if len(self.sessions) != 1:
            names = ", ".join(s.name or str(s.firewall) for s in self.sessions) or "none"
            raise ConfigError([f"bgp.peers: a firewall snippet is for one peer, choose one of: {names}"])
        return self.sessions[0]


def peering(config: Config) -> Peering:
    bgp = config.bgp
    return Peering(
        sessions=tuple(_session(i, peer, bgp.local_as) for i, peer in enumerate(bgp.peers)),
        refused=minimal(config.guards.protected),
        discard=discard_next_hops(bgp),
        min_length_ipv4=config.guards.min_length_ipv4,
        min_length_ipv6=config.guards.min_length_ipv6,
        communities=bgp.communities,
        discard_ipv4=bgp.discard_ipv4,
        discard_ipv6=bgp.discard_ipv6,
        prefix_limit=bgp.prefix_limit,
        injector_as=bgp.local_as,
        injector_router_id=bgp.router_id,
        aggregation=config.aggregation,
    )


def _session(index: int, peer: Peer, local_as: int) -> Session:
    if peer.local_address is None:
        # The firewall names the injector by this address; guessing it from router_id could be wrong.
        raise ConfigError([f"bgp.peers[{index}].local_address: required to render peering snippets"])
    if peer.local_address.version != peer.address.version:
        raise ConfigError([f"bgp.peers[{index}].local_address: not the same address family as address"])
    return Session(peer.address, peer.asn, peer.local_address, local_as, index, peer.name)


def minimal(entries: tuple[ProtectedPrefix, ...]) -> tuple[ProtectedPrefix, ...]:
    """Drop duplicates and entries inside another entry: the firewall's deny list covers them anyway."""
    kept: list[ProtectedPrefix] = []
    for entry in sorted(entries, key=lambda e: (e.prefix.version, e.prefix.prefixlen)):
        if not any(_inside(entry.prefix, k.prefix) for k in kept):
            kept.append(entry)
    order = {id(e): i for i, e in enumerate(entries)}
    return tuple(sorted(kept, key=lambda e: (e.prefix.version, order[id(e)])))


def _inside(prefix: IPNetwork, outer: IPNetwork) -> bool:
    return prefix.version == outer.version and prefix.prefixlen >= outer.prefixlen and prefix in outer


def placeholders(p: Peering, session: Session) -> list[Placeholder]:
    """Every config-derived value in a firewall's snippet, for its header."""
    key = f"bgp.peers[{session.index}]"
    return [
        Placeholder(str(session.firewall), f"{key}.address", "this firewall: session address and router id"),
        Placeholder(str(session.firewall_as), f"{key}.asn", "this firewall's AS"),
        Placeholder(str(session.injector), f"{key}.local_address", "the injector's address"),
        Placeholder(str(session.injector_as), "bgp.local_as", "the injector's AS"),
        *_policy(p, "never accepted"),
        Placeholder(str(p.prefix_limit), "bgp.prefix_limit", "most routes accepted from the injector"),
        discard_placeholder(p),
    ]


def discard_placeholder(p: Peering) -> Placeholder:
    return Placeholder(f"{p.discard_ipv4}, {p.discard_ipv6}", "bgp.discard_ipv4, bgp.discard_ipv6",
                       "discard next-hops routed to Null0, never accepted as blackholes")


def injector_sessions(p: Peering, names: bool = False) -> list[Placeholder]:
    """The injector's AS and router id, and each session (with its name as the description if NAMES)."""
    found = [
        Placeholder(str(p.injector_as), "bgp.local_as", "the injector's AS"),
        Placeholder(str(p.injector_router_id), "bgp.router_id", "the injector's router id"),
    ]
    for s in p.sessions:
        key = f"bgp.peers[{s.index}]"
        found += [
            Placeholder(str(s.firewall), f"{key}.address", f"firewall {s.name}"),
            Placeholder(str(s.firewall_as), f"{key}.asn", f"firewall {s.name}'s AS"),
            Placeholder(str(s.injector), f"{key}.local_address", "the injector's address toward it"),
        ]
        if names and s.name:
            found.append(Placeholder(s.name, f"{key}.name", "its description"))
    return found


def injector_placeholders(p: Peering) -> list[Placeholder]:
    return injector_sessions(p) + _policy(p, "never announced") + [discard_placeholder(p)]


def _policy(p: Peering, refused: str) -> list[Placeholder]:
    found = [
        Placeholder(str(entry.prefix.cidr), _protected_key(entry), f"{refused} ({entry.kind})")
        for entry in p.refused
        if entry not in p.discard  # named by discard_placeholder
    ]
    return found + [
        Placeholder(f"/{p.min_length_ipv4}, /{p.min_length_ipv6}", "guards.min_length_ipv4, guards.min_length_ipv6",
                    "shortest prefix length"),
        *_aggregation(p.aggregation),
        Placeholder(" ".join(p.communities), "bgp.communities", f"{BLACKHOLE} (RFC 7999 BLACKHOLE) is always first"),
    ]


def _aggregation(agg: AggregationPolicy) -> list[Placeholder]:
    """The wider prefixes the daemon makes, each within the shortest length above."""
    found = []
    if agg.ipv6_ban_length < 128 or agg.jails:
        jails = "".join(f", {jail} /{length}" for jail, length in sorted(agg.jails.items()))
        found.append(Placeholder(f"/{agg.ipv6_ban_length}{jails}", "aggregation.ipv6_ban_length, aggregation.jails",
                                 "IPv6 bans widened to"))
    if agg.escalation.enabled:
        found.append(Placeholder(f"/{agg.escalation.ipv4_length}, /{agg.escalation.ipv6_length}",
                                 "aggregation.escalation.ipv4_length, .ipv6_length", "escalated covering prefixes"))
    return found


def _protected_key(entry: ProtectedPrefix) -> str:
    if entry.kind in ("peer", "host-address"):
        return f"bgp.peers ({entry.name})"
    if entry.kind == "next-hop":
        return f"bgp.{entry.name}"
    return f"guards.protected ({entry.name})" if entry.name else "guards.protected"
