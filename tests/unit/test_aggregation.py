"""Aggregation decisions: the annotated table in tests/data/aggregation_cases.txt."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import pytest

from f2b_bgp.address import to_prefix
from f2b_bgp.aggregation import AggregationPolicy, Decision, Escalation, Member, RecentBans, decide, reason, widen
from f2b_bgp.guards import Accepted, GuardPolicy, HostFacts, check_text
from f2b_bgp.model import Prefix
from tests.unit.annotated import GuardSetting, case_lines

CASES = Path(__file__).parent.parent / "data" / "aggregation_cases.txt"
CASE_LINE = re.compile(r"(?P<kind>widen|escalate)\s+(?P<inputs>.+?)\s+=>\s+(?P<expected>[^#]+?)\s*#\s*(?P<why>\S.*)")
MEMBER = re.compile(r"(?:(?P<jail>[A-Za-z0-9._-]+)=)?(?P<text>[^@=\s]+)@(?P<at>\d+)")


@dataclass
class Setting(GuardSetting):
    guard: dict[str, int] = field(default_factory=dict)
    ban_length: int = 128
    jails: dict[str, int] = field(default_factory=dict)
    escalation: Escalation = Escalation()

    def apply(self, directive: str, args: list[str]) -> None:
        if self.apply_guard(directive, args):
            return
        if directive == "guard":
            self.guard[args[0]] = int(args[1])
        elif directive == "ban-length":
            self.ban_length = int(args[0])
        elif directive == "jail":
            self.jails[args[0]] = int(args[1])
        elif directive == "escalation":
            kind = {f.name: f.type for f in fields(Escalation)}[args[0]]
            value = args[1] == "true" if kind == "bool" else float(args[1]) if kind == "float" else int(args[1])
            self.escalation = replace(self.escalation, **{args[0]: value})
        else:
            raise ValueError(f"unknown directive @{directive}")

    def frozen(self) -> tuple[GuardPolicy, HostFacts, AggregationPolicy]:
        guards = GuardPolicy(protected=tuple(self.protected), allow_special=tuple(self.allow), **self.guard)
        return guards, self.host(), AggregationPolicy(self.ban_length, dict(self.jails),
                                                                           self.escalation)


@dataclass
class Case:
    line: int
    kind: str
    inputs: list[str]
    expected: list[str]
    why: str
    guards: GuardPolicy
    host: HostFacts
    policy: AggregationPolicy

    def __str__(self) -> str:
        return f"{CASES.name}:{self.line} {self.kind} {' '.join(self.inputs)} ({self.why})"


def load_cases(path: Path) -> list[Case]:
    setting, cases = Setting(), []
    for number, match in case_lines(path, setting, CASE_LINE, "<kind> <inputs> => <expected> # <why>"):
        cases.append(Case(number, match["kind"], match["inputs"].split(), match["expected"].split(), match["why"],
                          *setting.frozen()))
    return cases


ALL_CASES = load_cases(CASES)


def accepted(case: Case, text: str) -> Prefix | None:
    """The prefix the guards accept for text, as the service's ban() does first; None if refused."""
    verdict = check_text(text, case.guards, case.host)
    return verdict.prefix if isinstance(verdict, Accepted) else None


def check_widen(case: Case) -> None:
    jail, text = case.inputs
    banned = accepted(case, text)
    assert banned is not None, f"{case}: the input itself is refused, the case tests nothing"
    got = widen(banned, jail, case.policy, case.guards, case.host)
    prefix, *rest = case.expected
    assert str(got.prefix) == prefix, f"{case}: {got}"
    if rest == ["widened"]:
        assert (got.origin, got.address, got.refused) == ("widened", banned.address, None), f"{case}: {got}"
    elif rest[:1] == ["refused"]:
        assert got.refused is not None and got.refused.guard == rest[1], f"{case}: {got}"
        assert got.tried is not None and got.tried.length < banned.length and got.address == "", f"{case}: {got}"
    else:
        assert rest == [] and (got.address, got.refused) == ("", None), f"{case}: {got}"


def check_escalate(case: Case) -> None:
    members = []
    for token in case.inputs:
        match = MEMBER.fullmatch(token)
        assert match, f"{case}: bad member {token!r}"
        jail = match["jail"] or "sshd"
        banned = accepted(case, match["text"])
        if banned is not None:  # a member the guards refuse is never banned, so never counted
            route = widen(banned, jail, case.policy, case.guards, case.host).prefix
            members.append(Member(route, match["text"], jail, float(match["at"])))
    new = MEMBER.fullmatch(case.inputs[-1])
    if not members or members[-1].address != new["text"]:  # type: ignore[index]
        assert case.expected == ["none"], f"{case}: the new ban is refused by the guards"
        return
    got = decide(members[-1], members[:-1], case.policy.escalation, case.guards, case.host, members[-1].at)
    if case.expected == ["none"]:
        assert got is None, f"{case}: {got}"
    elif case.expected[0] == "refused":
        assert got is not None and got.refused is not None, f"{case}: {got}"
        assert (str(got.cover), got.refused.guard) == tuple(case.expected[1:]), f"{case}: {got}"
    else:
        cover, count = case.expected
        assert got is not None and got.refused is None, f"{case}: {got}"
        assert (str(got.cover), len(got.members)) == (cover, int(count)), f"{case}: {got}"
        assert [m.at for m in got.members] == sorted(m.at for m in got.members), f"{case}: oldest first"


@pytest.mark.parametrize("case", [pytest.param(c, id=f"line{c.line}") for c in ALL_CASES])
def test_aggregation_case(case: Case) -> None:
    (check_widen if case.kind == "widen" else check_escalate)(case)


def test_table_is_large_and_covers_every_outcome() -> None:
    assert len(ALL_CASES) >= 30
    outcomes = {(c.kind, c.expected[0] if c.expected[0] in ("none", "refused") else
                 c.expected[1] if c.kind == "widen" and len(c.expected) > 1 else "claim") for c in ALL_CASES}
    assert outcomes >= {("widen", "widened"), ("widen", "refused"), ("widen", "claim"), ("escalate", "none"),
                        ("escalate", "refused"), ("escalate", "claim")}
    refused = {c.expected[-1] for c in ALL_CASES if "refused" in c.expected}
    assert refused >= {"protected", "peer", "next-hop", "host-address", "special", "length"}


def test_reason_names_the_members_and_the_window() -> None:
    cover = Prefix.parse("203.0.113.0/24")
    members = tuple(Member(Prefix.parse(f"203.0.113.{i}"), f"203.0.113.{i}", "sshd", float(i)) for i in range(12))
    text = reason(Decision(cover, members), Escalation(window=600))
    assert text.startswith("escalated after 12 bans in 10 min: 203.0.113.0 (sshd), 203.0.113.1 (sshd), ")
    assert text.endswith("203.0.113.9 (sshd) and 2 more")


def test_recent_bans_forget_what_left_the_window() -> None:
    recent = RecentBans(Escalation(enabled=True, window=60))
    for i in range(100):
        recent.add(Member(Prefix.parse(f"203.0.113.{i}"), f"203.0.113.{i}", "sshd", float(i)), float(i))
    assert len(recent.near(Prefix.parse("203.0.113.200"))) == 61  # at 99: those at 39..99
    assert len(recent.order) <= 62
    recent.add(Member(Prefix.parse("203.0.113.1"), "203.0.113.1", "sshd", 0.0), 1000.0)  # too old to count
    recent.add(Member(Prefix.parse("198.18.0.1"), "198.18.0.1", "sshd", 1000.0), 1000.0)
    assert recent.near(Prefix.parse("203.0.113.200")) == () and list(recent.by_cover) == [Prefix.parse("198.18.0.0/24")]
