"""The ExaBGP API lines, exactly: tests/golden/exabgp/lines.txt holds one `# case` header and its lines per case."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from f2b_bgp.backends.exabgp import ExabgpBackend, _Item, attributes
from f2b_bgp.backends.exabgp_lines import COMMAND, Verb, commands, parse_adj_rib_out
from f2b_bgp.model import Prefix
from f2b_bgp.peering.regenerate import reference_config

GOLDEN = Path(__file__).parents[1] / "golden" / "exabgp" / "lines.txt"
BGP = reference_config().bgp
MIXED = [Prefix.parse(p) for p in ("203.0.113.5/32", "2001:db8:203::5/128", "203.0.113.6/32", "2001:db8:203::6/128")]
AGGREGATED = [Prefix.parse(p) for p in ("2001:db8:203:107::/64", "203.0.113.0/24", "203.0.113.5/32")]


def cases() -> dict[str, list[str]]:
    """What the renderer makes for each case; the golden file must hold exactly this."""
    extra = dataclasses.replace(BGP, communities=(*BGP.communities, "65001:666", "65001:1"))
    no_next_hop = dataclasses.replace(BGP, next_hop_ipv4=None)
    many = [Prefix.parse(f"203.0.113.{i}/32") for i in range(1, 6)]
    ref, extra, no_next_hop = attributes(BGP), attributes(extra), attributes(no_next_hop)
    made = {
        "announce one IPv4 host route": commands(Verb.ANNOUNCE, MIXED[:1], ref, 200),
        "withdraw one IPv6 host route": commands(Verb.WITHDRAW, MIXED[1:2], ref, 200),
        "mixed families: one line per family, IPv4 first": commands(Verb.ANNOUNCE, MIXED, ref, 200),
        "batch size 2 splits five prefixes into three lines": commands(Verb.ANNOUNCE, many, ref, 2),
        "configured communities follow 65535:666": commands(Verb.ANNOUNCE, MIXED[:2], extra, 200),
        "no IPv4 next-hop configured: the session's own address": commands(Verb.ANNOUNCE, MIXED[:2], no_next_hop, 200),
        "aggregated: a widened /64 and an escalated /24 beside a member": commands(Verb.ANNOUNCE, AGGREGATED, ref, 200),
    }
    return {name: [c.line() for c in made_commands] for name, made_commands in made.items()}


def golden() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in GOLDEN.read_text().splitlines():
        if line.startswith("# "):
            found[line[2:]] = []
        elif line:
            list(found.values())[-1].append(line)
    return found


@pytest.mark.parametrize("case", list(cases()))
def test_lines_match_the_golden_file(case: str) -> None:
    assert cases()[case] == golden()[case]


def test_golden_file_has_no_case_the_renderer_lacks() -> None:
    assert set(golden()) == set(cases())


def test_every_line_is_printable_ascii_and_passes_the_bridge() -> None:
    for lines in cases().values():
        for line in lines:
            assert line.isascii() and line.isprintable(), line
            assert COMMAND.fullmatch(line.encode()), line


def test_reference_next_hops_are_used() -> None:
    ref = attributes(BGP)
    assert (ref[4].next_hop, ref[6].next_hop) == ("198.51.100.2", "2001:db8:1::2")


def test_adj_rib_out_parsing_keeps_prefixes_of_every_peer_and_skips_noise() -> None:
    output = [
        "198.51.100.1 ipv4 unicast 203.0.113.5/32 next-hop 198.51.100.2",
        "198.51.100.9 ipv4 unicast 203.0.113.5/32 next-hop 198.51.100.2",
        "198.51.100.1 ipv6 unicast 2001:db8:203::5/128 next-hop 2001:db8:1::2",
        "198.51.100.9 ipv4 unicast 203.0.113.6/32 next-hop 192.0.2.9",
        "198.51.100.1 ipv4 unicast not-a-prefix next-hop 198.51.100.2",
        "198.51.100.1 ipv4 unicast 203.0.113.0/24 next-hop 198.51.100.2",
        "198.51.100.1 ipv6 unicast 2001:db8:203:107::/64 next-hop 2001:db8:1::2",
        "exabgp 5.0.15",
    ]
    assert parse_adj_rib_out(output) == {
        Prefix.parse("203.0.113.5/32"): frozenset({"198.51.100.2"}),
        Prefix.parse("2001:db8:203::5/128"): frozenset({"2001:db8:1::2"}),
        Prefix.parse("203.0.113.6/32"): frozenset({"192.0.2.9"}),
        Prefix.parse("203.0.113.0/24"): frozenset({"198.51.100.2"}),
        Prefix.parse("2001:db8:203:107::/64"): frozenset({"2001:db8:1::2"}),
    }


if __name__ == "__main__":  # regenerate: python3 -m tests.unit.test_exabgp_lines
    GOLDEN.write_text("".join(f"# {name}\n" + "".join(f"{line}\n" for line in lines) + "\n"
                              for name, lines in cases().items()))


def test_a_batch_takes_its_verb_and_family_from_the_front_and_keeps_the_rest_in_order() -> None:
    async def batches() -> list[list[str]]:
        config = reference_config()
        backend = ExabgpBackend(dataclasses.replace(config.exabgp, batch_size=3), {}, None, 10)  # type: ignore[arg-type]
        v4, v6 = [Prefix.parse(f"203.0.113.{i}") for i in range(5)], Prefix.parse("2001:db8::1")
        backend.queue.extend(_Item(verb, p) for verb, p in [(Verb.ANNOUNCE, v4[0]), (Verb.WITHDRAW, v4[1]),
                                                            (Verb.ANNOUNCE, v6), (Verb.ANNOUNCE, v4[2]),
                                                            (Verb.ANNOUNCE, v4[3]), (Verb.ANNOUNCE, v4[4])])
        taken = []
        while backend.queue:
            taken.append([f"{item.verb.value} {item.prefix}" for item in backend._next_batch()])
        return taken

    assert asyncio.run(batches()) == [
        ["announce 203.0.113.0/32", "announce 203.0.113.2/32", "announce 203.0.113.3/32"],
        ["withdraw 203.0.113.1/32"], ["announce 2001:db8::1/128"], ["announce 203.0.113.4/32"]]
