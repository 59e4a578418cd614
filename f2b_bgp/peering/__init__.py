"""Render the firewall (and injector) side of the BGP sessions from the daemon's own config."""

from __future__ import annotations

from collections.abc import Callable

from f2b_bgp.config import Config

from . import bird, exabgp, frr, openbgpd, routeros

# Firewall side: one snippet per firewall, for the peer named (or the only one).
FIREWALLS: dict[str, Callable[[Config, str | None], dict[str, str]]] = {
    "frr": frr.render_firewall,
    "bird": bird.render,
    "openbgpd": openbgpd.render,
    "routeros": routeros.render,
}
# Injector side: one snippet for every peer.
INJECTORS: dict[str, Callable[[Config], dict[str, str]]] = {
    "exabgp": exabgp.render,
    "frr-injector": frr.render_injector,
}
TARGETS: tuple[str, ...] = (*FIREWALLS, *INJECTORS)


def render(target: str, config: Config, peer: str | None = None,
           routeros_syntax: routeros.Syntax = routeros.NEWEST) -> dict[str, str]:
    """File name -> content for TARGET. A firewall target is rendered for the peer
    named (bgp.peers[].name), which may be left out when there is only one;
    ROUTEROS_SYNTAX is the connection syntax of the routeros target."""
    if target == "routeros":
        return routeros.render(config, peer, routeros_syntax)
    if target in FIREWALLS:
        return FIREWALLS[target](config, peer)
    if target in INJECTORS:
        return INJECTORS[target](config)
    raise ValueError(f"unknown peering target {target!r}; choose from {', '.join(TARGETS)}")
