"""The ExaBGP API grammar we speak: every line f2b-bgp sends, and the replies it parses.

Only these lines are ever sent, so ExaBGP answers each with exactly one ack
(`done` or `error`), in order: ExaBGP answers unknown or garbled commands out
of order (notes/exabgp-api.md section 2), and none is ever sent. The bridge
checks every line against COMMAND with this same module.

Standard library only: the bridge imports it at every ExaBGP start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from ..model import Prefix

SHOW_ADJ_RIB_OUT = "show adj-rib out"
# The only commands the daemon sends; the bridge refuses anything else before it reaches ExaBGP.
COMMAND = re.compile(rb"(?:(?:announce|withdraw) attributes [\x20-\x7e]+|show adj-rib out)")
# "198.51.100.1 ipv4 unicast 203.0.113.5/32 next-hop 198.51.100.2" (one line per peer and route)
_ADJ_RIB_LINE = re.compile(r"\bipv[46] unicast (\S+)(?: next-hop (\S+))?")


class Verb(str, Enum):
    ANNOUNCE = "announce"
    WITHDRAW = "withdraw"


@dataclass(frozen=True)
class Attributes:
    """What every blackhole of one address family carries."""

    next_hop: str | None  # None: ExaBGP's "self", the session's local address
    communities: tuple[str, ...]  # "ASN:VALUE", 65535:666 first

    def text(self) -> str:
        return f"next-hop {self.next_hop or 'self'} community [{' '.join(self.communities)}]"


@dataclass(frozen=True)
class Command:
    verb: Verb
    attributes: Attributes
    prefixes: tuple[Prefix, ...]

    def line(self) -> str:
        nlri = " ".join(str(p) for p in self.prefixes)
        return f"{self.verb.value} attributes {self.attributes.text()} nlri {nlri}"


def commands(verb: Verb, prefixes: Iterable[Prefix], attributes: Mapping[int, Attributes],
             batch_size: int) -> Iterator[Command]:
    """One command per family and batch_size prefixes, IPv4 first, prefixes in the given order."""
    prefixes = list(prefixes)
    for version in (4, 6):
        family = [p for p in prefixes if p.version == version]
        for start in range(0, len(family), batch_size):
            yield Command(verb, attributes[version], tuple(family[start:start + batch_size]))


def parse_adj_rib_out(lines: Sequence[str]) -> dict[Prefix, frozenset[str]]:
    """The prefixes in `show adj-rib out` output, over all peers, each with the next-hops it is
    announced with (ExaBGP does not show communities); unparsable lines are skipped."""
    found: dict[Prefix, set[str]] = {}
    for line in lines:
        match = _ADJ_RIB_LINE.search(line)
        if match is None:
            continue
        try:
            prefix = Prefix.parse(match.group(1))
        except ValueError:
            continue
        hops = found.setdefault(prefix, set())
        if match.group(2):
            hops.add(_canonical_hop(match.group(2)))
    return {prefix: frozenset(hops) for prefix, hops in found.items()}


def _canonical_hop(text: str) -> str:
    try:
        return Prefix.parse(text).address
    except ValueError:
        return text
