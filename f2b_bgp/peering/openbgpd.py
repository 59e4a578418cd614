"""OpenBGPD as the firewall: bgpd.conf, and on OpenBSD the pf table that drops by source."""

from __future__ import annotations

from f2b_bgp.config import Config

from .model import BLACKHOLE, peering, placeholders
from .text import header, template


def render(config: Config, peer: str | None = None) -> dict[str, str]:
    p = peering(config)
    session = p.session_for(peer)
    protected = "\n".join(f"\t{e.prefix.cidr} or-longer" for e in p.refused)
    router_id = session.router_id("router-id", "bgpd")
    return {
        "bgpd.conf": template(
            "openbgpd-bgpd.conf",
            header=header("#", "OpenBGPD firewall, bgpd.conf", "openbgpd", placeholders(p, session)),
            firewall_as=session.firewall_as,
            router_id=router_id,
            firewall=session.firewall,
            protected=protected,
            injector=session.injector,
            injector_as=session.injector_as,
            limit=p.prefix_limit,
            min4=p.min_length_ipv4,
            min6=p.min_length_ipv6,
            blackhole=BLACKHOLE,
        ),
        "pf.conf": template("openbgpd-pf.conf", header=header("#", "OpenBSD pf.conf part", "openbgpd", [])),
    }
