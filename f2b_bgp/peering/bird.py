"""BIRD 2 as the firewall: one bird.conf with the import filter and kernel export."""

from __future__ import annotations

from f2b_bgp.config import Config

from .model import BLACKHOLE, Peering, peering, placeholders
from . import urpf
from .text import header, template


def render(config: Config, peer: str | None = None) -> dict[str, str]:
    p = peering(config)
    session = p.session_for(peer)
    router_id = session.router_id("router id", "BIRD", end=";")
    return {
        "bird.conf": template(
            "bird.conf",
            header=header("#", "BIRD 2 firewall, bird.conf", "bird", placeholders(p, session)),
            router_id=router_id,
            protected4=_set(p, 4),
            protected6=_set(p, 6),
            min4=p.min_length_ipv4,
            min6=p.min_length_ipv6,
            blackhole=BLACKHOLE.replace(":", ","),
            firewall=session.firewall,
            firewall_as=session.firewall_as,
            injector=session.injector,
            injector_as=session.injector_as,
            limit=p.prefix_limit,
        ),
        **urpf.render("bird", "BIRD 2 firewall (Linux)"),
    }


def _set(p: Peering, version: int) -> str:
    """A BIRD prefix set: `+` matches the prefix and everything inside it."""
    return ", ".join(f"{e.prefix.cidr}+" for e in p.refused_for(version))
