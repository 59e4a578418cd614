"""FRR: the firewall (receiver) side and the injector side of the kernel backend."""

from __future__ import annotations

from netaddr import IPNetwork

from f2b_bgp.config import Config

from . import urpf
from .model import (
    BLACKHOLE,
    Placeholder,
    ProtectedPrefix,
    Session,
    discard_placeholder,
    injector_placeholders,
    peering,
    placeholders,
)
from .text import header, template


def render_firewall(config: Config, peer: str | None = None) -> dict[str, str]:
    p = peering(config)
    session = p.session_for(peer)
    values = placeholders(p, session)

    def head(name: str, values: list[Placeholder]) -> str:
        return header("!", f"FRR firewall, {name}", "frr", values)

    common = {"discard4": p.discard_ipv4, "discard6": p.discard_ipv6}
    return {
        "bgpd.conf": template(
            "frr-bgpd.conf",
            header=head("bgpd.conf", values),
            protected=_prefix_lists(p.refused, "F2B-PROTECTED"),
            min4=p.min_length_ipv4,
            min6=p.min_length_ipv6,
            blackhole=BLACKHOLE,
            firewall_as=session.firewall_as,
            router_id=_router_id(session),
            injector=session.injector,
            injector_as=session.injector_as,
            limit=p.prefix_limit,
            **common,
        ),
        "staticd.conf": template("frr-staticd.conf", header=head("staticd.conf", [discard_placeholder(p)]), **common),
        "zebra.conf": template("frr-zebra.conf", header=head("zebra.conf", [])),
        **urpf.render("frr", "FRR firewall (Linux)"),
    }


def render_injector(config: Config) -> dict[str, str]:
    p = peering(config)
    values = injector_placeholders(p)

    def head(name: str, values: list[Placeholder]) -> str:
        return header("!", f"FRR injector (kernel backend), {name}", "frr-injector", values)

    loopback = (
        ProtectedPrefix(IPNetwork("127.0.0.0/8"), "loopback"),
        ProtectedPrefix(IPNetwork("::1/128"), "loopback"),
    )
    return {
        "bgpd.conf": template(
            "frr-injector-bgpd.conf",
            header=head("bgpd.conf", values),
            local=_prefix_lists(p.refused + loopback, "F2B-LOCAL"),
            min4=p.min_length_ipv4,
            min6=p.min_length_ipv6,
            blackhole=BLACKHOLE,
            communities=" ".join(p.communities),
            injector_as=p.injector_as,
            router_id=p.injector_id("FRR injector"),
            neighbors="\n".join(_neighbor(s) for s in p.sessions),
            neighbors4="\n".join(_neighbor_af(s, activate=False) for s in p.sessions),
            neighbors6="\n".join(_neighbor_af(s, activate=True) for s in p.sessions),
        ),
        "zebra.conf": template("frr-injector-zebra.conf", header=head("zebra.conf", [])),
    }


def _prefix_lists(entries: tuple[ProtectedPrefix, ...], name: str) -> str:
    lines = []
    for version, keyword, width in ((4, "ip", 32), (6, "ipv6", 128)):
        family = [e for e in entries if e.prefix.version == version]
        for seq, entry in enumerate(family, 1):
            label = f"{entry.name} ({entry.kind})" if entry.name else entry.kind
            longer = f" le {width}" if entry.prefix.prefixlen < width else ""
            rule = f"{keyword} prefix-list {name}{version} seq {seq * 5} permit {entry.prefix.cidr}{longer}"
            lines += [f"! {label}", rule]
    return "\n".join(lines)


def _router_id(session: Session) -> str:
    if session.firewall.version == 4:
        return f" bgp router-id {session.firewall}"
    return " ! no IPv4 session address to use as router id: FRR picks one"


def _neighbor(s: Session) -> str:
    lines = [
        f"{s.firewall} remote-as {s.firewall_as}",
        f"{s.firewall} description {s.name or 'f2b-bgp firewall'}",
        f"{s.firewall} update-source {s.injector}",
        f"{s.firewall} timers connect 5",
    ]
    return "\n".join(f" neighbor {line}" for line in lines)


def _neighbor_af(s: Session, activate: bool) -> str:
    lines = [f"{s.firewall} activate"] if activate else []
    lines += [f"{s.firewall} route-map F2B-IN in", f"{s.firewall} route-map F2B-OUT out"]
    return "\n".join(f"  neighbor {line}" for line in lines)
