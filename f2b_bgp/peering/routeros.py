"""MikroTik RouterOS v7: a script of routing filter rules and the BGP connection (tested on no device)."""

from __future__ import annotations

import re
from enum import Enum

from f2b_bgp.config import Config

from .model import BLACKHOLE, Session, peering, placeholders
from .text import header, template

# The comment on everything the script adds: an import first removes what carries it.
MARK = "f2b-bgp"
_VERSION = re.compile(r"7\.(0|[1-9][0-9]{0,2})(?:\.(0|[1-9][0-9]{0,2}))?")


class Syntax(Enum):
    """How `/routing bgp connection` is written, named by the RouterOS versions that take it."""

    ADDRESS_FAMILIES = "7.1 to 7.18"  # address-families=, router-id on the connection
    AFI = "7.19"  # afi= replaces address-families=
    INSTANCE = "7.20 and later"  # router-id moves to /routing bgp instance; instance= is mandatory


NEWEST = Syntax.INSTANCE


def syntax_for(version: str) -> Syntax:
    """The syntax of RouterOS VERSION ("7.19", "7.20.1"); ValueError unless it is a v7 release."""
    match = _VERSION.fullmatch(version)
    if match is None or match[1] == "0":
        raise ValueError(f"{version!r} is not a RouterOS v7 release such as 7.18, 7.19 or 7.20.1 (7.1 or later)")
    minor = int(match[1])
    if minor <= 18:
        return Syntax.ADDRESS_FAMILIES
    return Syntax.AFI if minor == 19 else Syntax.INSTANCE


def render(config: Config, peer: str | None = None, syntax: Syntax = NEWEST) -> dict[str, str]:
    p = peering(config)
    session = p.session_for(peer)
    title = f"RouterOS v7 firewall ({syntax.value}), f2b-bgp.rsc"
    protected = "\n".join(_rule(f"if (dst in {e.prefix.cidr}) {{ reject }}") for e in p.refused)
    return {
        "f2b-bgp.rsc": template(
            "routeros.rsc",
            header=header("#", title, "routeros", placeholders(p, session)),
            versions=syntax.value,
            mark=MARK,
            remove_instance=f'/routing bgp instance remove [find where comment="{MARK}"]\n'
            if syntax is Syntax.INSTANCE else "",
            protected=protected,
            host4=_rule(f"if (afi ipv4 && dst-len >= {p.min_length_ipv4} && bgp-communities includes {BLACKHOLE}) "
                        "{ set blackhole yes; accept }"),
            host6=_rule(f"if (afi ipv6 && dst-len >= {p.min_length_ipv6} && bgp-communities includes {BLACKHOLE}) "
                        "{ set blackhole yes; accept }"),
            reject_in=_rule("reject"),
            reject_out=_rule("reject", chain="f2b-out"),
            limit=p.prefix_limit,
            injector=session.injector,
            connection=_connection(session, p.prefix_limit, syntax),
        )
    }


def _rule(rule: str, chain: str = "f2b-in") -> str:
    return f'add chain={chain} comment="{MARK}" rule="{rule}"'


def _connection(session: Session, limit: int, syntax: Syntax) -> str:
    router_id = f" router-id={session.firewall}" if session.firewall.version == 4 else ""
    lines = []
    if syntax is Syntax.INSTANCE:
        lines += ["/routing bgp instance", f'add name=f2b-bgp comment="{MARK}" as={session.firewall_as}{router_id}']
        identity = f" instance=f2b-bgp as={session.firewall_as}"
    else:
        identity = f" as={session.firewall_as}{router_id}"
    families = "address-families=ip,ipv6" if syntax is Syntax.ADDRESS_FAMILIES else "afi=ip,ipv6"
    lines += [
        "/routing bgp connection",
        f'add name=f2b-injector comment="{MARK}"{identity} local.role=ebgp local.address={session.firewall} \\',
        f"    remote.address={session.injector} remote.as={session.injector_as} {families} \\",
        "    input.filter=f2b-in output.filter-chain=f2b-out \\",
        f"    input.limit-process-routes-ipv4={limit} input.limit-process-routes-ipv6={limit}",
    ]
    return "\n".join(lines)
