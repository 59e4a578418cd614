"""Guards: the annotated table in tests/data/guard_cases.txt, plus capacity and start-up checks."""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path

import pytest
from netaddr import IPNetwork

from f2b_bgp.address import to_prefix
from f2b_bgp.guards import (
    GUARDS,
    Accepted,
    GuardPolicy,
    HostFacts,
    ProtectedPrefix,
    Refused,
    check_capacity,
    check_prefix,
    check_text,
    empty_protection,
    special_purpose,
)
from f2b_bgp.model import Prefix
from tests.unit.annotated import GuardSetting, case_lines

CASES = Path(__file__).parent.parent / "data" / "guard_cases.txt"
CASE_LINE = re.compile(
    r"""(?P<text>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s+(?P<verdict>[^#]*?)\s*#\s*(?P<why>\S.*)"""
)


@dataclass
class Case:
    line: int
    text: str
    verdict: str  # "accept" or "refuse"
    expected: str  # canonical prefix, or guard code
    fragment: str  # text str(Refused) must contain
    why: str
    policy: GuardPolicy
    host: HostFacts


@dataclass
class _Setting(GuardSetting):
    fields: dict[str, int | bool] = field(default_factory=dict)

    def apply(self, directive: str, args: list[str]) -> None:
        if self.apply_guard(directive, args):
            return
        if directive == "set":
            name, value = args
            self.fields[name] = {"true": True, "false": False}[value] if value in ("true", "false") else int(value)
        else:
            raise ValueError(f"unknown directive @{directive}")

    def policy(self) -> GuardPolicy:
        return GuardPolicy(protected=tuple(self.protected), allow_special=tuple(self.allow), **self.fields)


def load_cases(path: Path) -> list[Case]:
    setting, cases = _Setting(), []
    for number, match in case_lines(path, setting, CASE_LINE, "<literal> <verdict> # <why>"):
        verdict, expected, *rest = match["verdict"].split(None, 2)
        fragment = ast.literal_eval(rest[0]) if rest else ""
        cases.append(
            Case(
                number,
                ast.literal_eval(match["text"]),
                verdict,
                expected,
                fragment,
                match["why"],
                setting.policy(),
                setting.host(),
            )
        )
    return cases


ALL_CASES = load_cases(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, id=f"line{c.line}") for c in ALL_CASES])
def test_guard_case(case: Case) -> None:
    verdict = check_text(case.text, case.policy, case.host)
    where = f"{CASES.name}:{case.line} {case.text!r} ({case.why})"
    if case.verdict == "accept":
        assert isinstance(verdict, Accepted), f"{where}: expected accept, got {verdict}"
        assert str(verdict.prefix) == case.expected, where
    else:
        assert case.verdict == "refuse", where
        assert isinstance(verdict, Refused), f"{where}: expected refuse {case.expected}, got {verdict}"
        assert verdict.guard == case.expected, f"{where}: {verdict}"
        assert case.fragment in str(verdict), f"{where}: {verdict}"
        assert verdict.reason.isprintable(), where


def test_table_is_large_and_covers_every_static_guard() -> None:
    assert len(ALL_CASES) >= 60
    refused = {case.expected for case in ALL_CASES if case.verdict == "refuse"}
    assert refused == set(GUARDS) - {"max-routes", "max-rate"}


def test_refused_prints_guard_and_reason() -> None:
    assert str(Refused("protected", "198.51.100.0/24 (office)")) == "protected: 198.51.100.0/24 (office)"


@pytest.mark.parametrize(
    ("active", "recent", "expected"),
    [
        (0, 0, None),
        (9999, 599, None),  # one below each limit
        (10000, 0, "max-routes"),
        (10001, 0, "max-routes"),  # already over, e.g. after the limit was lowered
        (0, 600, "max-rate"),
        (10000, 600, "max-routes"),  # both: the route limit is named
    ],
)
def test_capacity_boundaries(active: int, recent: int, expected: str | None) -> None:
    verdict = check_capacity(active, recent, GuardPolicy())
    assert (verdict.guard if verdict else None) == expected


def test_capacity_reason_names_the_setting() -> None:
    policy = GuardPolicy(max_routes=5, max_rate=2)
    assert check_capacity(4, 1, policy) is None
    assert str(check_capacity(5, 0, policy)) == "max-routes: 5 routes active, the limit is 5 (max_routes)"
    assert str(check_capacity(0, 2, policy)) == (
        "max-rate: 2 new bans in the last minute, the limit is 2 per minute (max_rate)"
    )
    assert check_capacity(0, 0, replace(policy, max_routes=0)).guard == "max-routes"


OFFICE = ProtectedPrefix(IPNetwork("198.51.100.0/24"), "office")
PEER = ProtectedPrefix(IPNetwork("198.51.100.1/32"), "fw1", "peer")
NEXT_HOP = ProtectedPrefix(IPNetwork("192.0.2.1/32"), "discard", "next-hop")
OWN = HostFacts((IPNetwork("192.0.2.10/24"),))


@pytest.mark.parametrize(
    ("policy", "host", "empty"),
    [
        (GuardPolicy(), HostFacts(), True),
        (GuardPolicy(protected=(OFFICE,)), HostFacts(), False),
        (GuardPolicy(), OWN, False),
        (GuardPolicy(protected=(PEER, NEXT_HOP)), HostFacts(), True),  # peers and next-hops alone protect nothing of ours
        (GuardPolicy(protect_host_addresses=False), OWN, True),  # host addresses found but not used
        (GuardPolicy(allow_empty_protected=True), HostFacts(), True),  # a fact; the caller decides to start anyway
    ],
)
def test_empty_protection(policy: GuardPolicy, host: HostFacts, empty: bool) -> None:
    assert empty_protection(policy, host) is empty


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        ProtectedPrefix(IPNetwork("198.51.100.0/24"), "office", "friend")


def test_name_must_be_printable_because_reasons_are_one_line() -> None:
    with pytest.raises(ValueError, match="printable"):
        ProtectedPrefix(IPNetwork("198.51.100.0/24"), "office\nprotected: nothing")


def test_policy_is_frozen_and_hashable() -> None:
    policy = GuardPolicy(protected=(OFFICE,))
    assert policy == GuardPolicy(protected=(ProtectedPrefix(IPNetwork("198.51.100.0/24"), "office"),))
    assert hash(policy) == hash(GuardPolicy(protected=(OFFICE,)))
    with pytest.raises(AttributeError):
        policy.max_routes = 1  # type: ignore[misc]


def test_check_prefix_refuses_host_bits_instead_of_guessing() -> None:
    verdict = check_prefix(IPNetwork("203.0.113.7/24"), GuardPolicy(min_length_ipv4=24), HostFacts())
    assert str(verdict) == "input: host bits set in 203.0.113.7/24, the network would be 203.0.113.0/24"


def test_check_prefix_does_not_map_ipv6_itself() -> None:
    # Values from config or the store are already normalised; a mapped one left here is refused, not mapped.
    verdict = check_prefix(IPNetwork("::ffff:203.0.113.7/128"), GuardPolicy(), HostFacts())
    assert verdict == Refused("special", "::ffff:0.0.0.0/96 IPv4-mapped Address (RFC4291, not globally reachable)")


def test_accepted_prefix_is_the_models_immutable_prefix() -> None:
    verdict = check_prefix(IPNetwork("2a00:1::/32"), GuardPolicy(min_length_ipv6=32), HostFacts())
    assert verdict == Accepted(Prefix(6, 0x2A000001 << 96, 32))


@pytest.mark.parametrize(
    "prefix",
    "0.0.0.0/8 10.0.0.0/8 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.168.0.0/16 100.64.0.0/10 "
    "224.0.0.0/4 240.0.0.0/4 255.255.255.255/32 192.0.2.0/24 198.51.100.0/24 203.0.113.0/24 198.18.0.0/15 "
    "::/128 ::1/128 fe80::/10 fc00::/7 ff00::/8 2001:db8::/32 64:ff9b::/96".split(),
)
def test_registry_names_the_required_blocks(prefix: str) -> None:
    assert special_purpose(IPNetwork(prefix)).startswith(f"{prefix} ")


def test_registry_file_every_entry_finds_itself() -> None:
    text = files("f2b_bgp.data").joinpath("special_purpose.txt").read_text(encoding="ascii")
    prefixes = [line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert len(prefixes) == len(set(prefixes)) > 60
    for prefix in prefixes:
        assert special_purpose(IPNetwork(prefix)).startswith(f"{IPNetwork(prefix)} "), prefix


@pytest.mark.parametrize("prefix", ["203.0.114.1/32", "2a00::1/128", "1.0.0.0/8", "2a00::/16"])
def test_registry_leaves_global_space_alone(prefix: str) -> None:
    assert special_purpose(IPNetwork(prefix)) is None


def test_registry_names_a_block_inside_a_short_prefix() -> None:
    assert special_purpose(IPNetwork("192.0.0.0/16")).startswith("192.0.0.0/24 IETF Protocol Assignments")
    assert special_purpose(IPNetwork("2000::/3")).startswith("2001::/23 ")


def _random_prefix(rng: random.Random, version: int) -> IPNetwork:
    width = 32 if version == 4 else 128
    length = rng.randint(8, width) if version == 4 else rng.randint(16, width)
    value = rng.getrandbits(width) >> (width - length) << (width - length)
    return IPNetwork((value, length), version)


def test_large_policy_agrees_with_brute_force() -> None:
    rng = random.Random(6890)
    entries = tuple(ProtectedPrefix(_random_prefix(rng, version), f"p{i}") for i in range(1000) for version in (4, 6))
    everything = (IPNetwork("0.0.0.0/0"), IPNetwork("::/0"))
    policy = GuardPolicy(protected=entries, min_length_ipv4=0, min_length_ipv6=0, allow_special=everything)
    outcomes = set()
    for _ in range(1000):
        query = _random_prefix(rng, rng.choice((4, 6)))
        overlapping = {
            str(e)
            for e in entries
            if e.prefix.version == query.version and e.prefix.first <= query.last and query.first <= e.prefix.last
        }
        verdict = check_prefix(query, policy, HostFacts())
        outcomes.add(type(verdict))
        if overlapping:
            assert isinstance(verdict, Refused) and verdict.reason in overlapping, query
        else:
            assert verdict == Accepted(to_prefix(query)), query
    assert outcomes == {Accepted, Refused}
