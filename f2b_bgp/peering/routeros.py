"""MikroTik RouterOS v7: a script of routing filter rules and the BGP connection (tested on no device)."""

from __future__ import annotations

from f2b_bgp.config import Config

from .model import BLACKHOLE, peering, placeholders
from .text import header, template


def render(config: Config, peer: str | None = None) -> dict[str, str]:
    p = peering(config)
    session = p.session_for(peer)
    protected = "\n".join(
        f'add chain=f2b-in rule="if (dst in {e.prefix.cidr}) {{ reject }}"' for e in p.refused
    )
    return {
        "f2b-bgp.rsc": template(
            "routeros.rsc",
            header=header("#", "RouterOS v7 firewall, f2b-bgp.rsc", "routeros", placeholders(p, session)),
            protected=protected,
            min4=p.min_length_ipv4,
            min6=p.min_length_ipv6,
            blackhole=BLACKHOLE,
            limit=p.prefix_limit,
            firewall_as=session.firewall_as,
            router_id=f" router-id={session.firewall}" if session.firewall.version == 4 else "",
            firewall=session.firewall,
            injector=session.injector,
            injector_as=session.injector_as,
        )
    }
