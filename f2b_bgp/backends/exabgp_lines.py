"""Every line f2b-bgp sends to ExaBGP's process API, built from typed values, and the replies it parses.

Only these lines are ever sent, so ExaBGP answers each with exactly one ack
(`done` or `error`), in order: ExaBGP answers unknown or garbled commands out
of order (notes/exabgp-api.md section 2), and none is ever sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from netaddr import AddrFormatError, IPAddress, IPNetwork

from ..config import BgpConfig

SHOW_ADJ_RIB_OUT = "show adj-rib out"
# "198.51.100.1 ipv4 unicast 203.0.113.5/32 next-hop 198.51.100.2" (one line per peer and route)
_ADJ_RIB_LINE = re.compile(r"\bipv[46] unicast (\S+)")


class Verb(str, Enum):
    ANNOUNCE = "announce"
    WITHDRAW = "withdraw"


@dataclass(frozen=True)
class Attributes:
    """What every blackhole of one address family carries."""

    next_hop: IPAddress | None  # None: ExaBGP's "self", the session's local address
    communities: tuple[str, ...]  # "ASN:VALUE", 65535:666 first

    def text(self) -> str:
        return f"next-hop {self.next_hop or 'self'} community [{' '.join(self.communities)}]"


@dataclass(frozen=True)
class Command:
    verb: Verb
    attributes: Attributes
    prefixes: tuple[IPNetwork, ...]

    def line(self) -> str:
        nlri = " ".join(str(p.cidr) for p in self.prefixes)
        return f"{self.verb.value} attributes {self.attributes.text()} nlri {nlri}"


def attributes(bgp: BgpConfig, version: int) -> Attributes:
    """The configured communities only: NO_EXPORT is never added, since a speaker honouring it
    does not send the route over an eBGP session, and the firewall is usually one."""
    return Attributes(bgp.next_hop_ipv4 if version == 4 else bgp.next_hop_ipv6, bgp.communities)


def commands(verb: Verb, prefixes: Iterable[IPNetwork], bgp: BgpConfig, batch_size: int) -> Iterator[Command]:
    """One command per family and batch_size prefixes, IPv4 first, prefixes in the given order."""
    for version in (4, 6):
        family = [p for p in prefixes if p.version == version]
        attrs = attributes(bgp, version)
        for start in range(0, len(family), batch_size):
            yield Command(verb, attrs, tuple(family[start:start + batch_size]))


def parse_adj_rib_out(lines: Sequence[str]) -> set[IPNetwork]:
    """The prefixes in `show adj-rib out` output, over all peers; unparsable lines are skipped."""
    found: set[IPNetwork] = set()
    for line in lines:
        match = _ADJ_RIB_LINE.search(line)
        if match is None:
            continue
        try:
            found.add(IPNetwork(match.group(1)))
        except (AddrFormatError, ValueError):
            continue
    return found
