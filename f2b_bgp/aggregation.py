"""Pure aggregation decisions: which prefix a ban claims (IPv6 widening), and when bans of
many addresses inside one covering prefix escalate to it. No I/O, no clock: the service
passes the time and the recent bans, so every decision can be tested as a table.

A widened or escalated prefix passes every guard itself (check_prefix); when it does not,
the narrower ban goes ahead unchanged and the refusal is returned for the event log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .guards import GuardPolicy, HostFacts, Refused, check_prefix
from .model import Prefix

WIDENED = "widened"
ESCALATED = "escalated"
ESCALATION_OWNER = "escalation"  # the jail name of an escalated claim
MAX_NAMED = 10  # members named in an escalation's reason; the event log has the count


@dataclass(frozen=True)
class Escalation:
    enabled: bool = False
    ipv4_length: int = 24
    ipv6_length: int = 48
    threshold: int = 5  # distinct member routes inside one covering prefix ...
    window: float = 600.0  # ... banned within this many seconds
    bantime: int = 86400

    def length(self, version: int) -> int:
        return self.ipv4_length if version == 4 else self.ipv6_length


@dataclass(frozen=True)
class AggregationPolicy:
    ipv6_ban_length: int = 128  # 128: an IPv6 ban claims the address only
    jails: Mapping[str, int] = field(default_factory=dict)  # jail -> its own ipv6_ban_length
    escalation: Escalation = Escalation()

    def ban_length(self, jail: str) -> int:
        return self.jails.get(jail, self.ipv6_ban_length)


@dataclass(frozen=True)
class Widening:
    """What one ban claims: PREFIX; ADDRESS is the banned address when PREFIX is wider than it."""

    prefix: Prefix
    address: str = ""
    tried: Prefix | None = None  # the wider prefix the guards refused, with why
    refused: Refused | None = None

    @property
    def origin(self) -> str:
        return WIDENED if self.address else ""


@dataclass(frozen=True)
class Member:
    """A ban that counts toward escalation: the route it claims, the address banned, by whom, when."""

    prefix: Prefix
    address: str
    jail: str
    at: float


@dataclass(frozen=True)
class Decision:
    """K members within the window: blackhole COVER, unless the guards refused it."""

    cover: Prefix
    members: tuple[Member, ...]  # oldest first
    refused: Refused | None = None


def covering(prefix: Prefix, length: int) -> Prefix | None:
    """The prefix of LENGTH containing PREFIX, or None unless it is strictly wider."""
    if length >= prefix.length:
        return None
    shift = prefix.width - length
    return Prefix(prefix.version, prefix.value >> shift << shift, length)


def widen(banned: Prefix, jail: str, policy: AggregationPolicy, guards: GuardPolicy, host: HostFacts) -> Widening:
    """An IPv6 address banned by JAIL claims its covering prefix of the jail's ban length.

    Only addresses are widened: a prefix the operator wrote is meant as written."""
    if banned.version != 6 or not banned.is_host:
        return Widening(banned)
    wider = covering(banned, policy.ban_length(jail))
    if wider is None:
        return Widening(banned)
    verdict = check_prefix(wider, guards, host)
    if isinstance(verdict, Refused):
        return Widening(banned, tried=wider, refused=verdict)
    return Widening(wider, banned.address)


def escalation_cover(member: Prefix, policy: Escalation) -> Prefix | None:
    return covering(member, policy.length(member.version)) if policy.enabled else None


def decide(new: Member, recent: Iterable[Member], policy: Escalation, guards: GuardPolicy, host: HostFacts,
           now: float) -> Decision | None:
    """Whether NEW, with the RECENT bans, makes THRESHOLD distinct member routes inside one
    covering prefix within the window. Distinct routes, not addresses: five addresses of one
    widened /64 are one attacker already dropped, not five."""
    cover = escalation_cover(new.prefix, policy)
    if cover is None:
        return None
    since = now - policy.window
    members: dict[Prefix, Member] = {}
    for member in (*recent, new):
        if member.at >= since and covering(member.prefix, cover.length) == cover:
            old = members.get(member.prefix)
            if old is None or member.at > old.at:
                members[member.prefix] = member
    if len(members) < policy.threshold:
        return None
    chosen = tuple(sorted(members.values(), key=lambda m: (m.at, m.prefix)))
    verdict = check_prefix(cover, guards, host)
    return Decision(cover, chosen, verdict if isinstance(verdict, Refused) else None)


def reason(decision: Decision, policy: Escalation) -> str:
    """One line, as `show` prints it: 'escalated after 5 bans in 10 min: 203.0.113.1 (sshd), ...'."""
    named = ", ".join(f"{m.address} ({m.jail})" for m in decision.members[:MAX_NAMED])
    more = f" and {len(decision.members) - MAX_NAMED} more" if len(decision.members) > MAX_NAMED else ""
    return f"escalated after {len(decision.members)} bans in {_duration(policy.window)}: {named}{more}"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"


class RecentBans:
    """The members banned within the window, per covering prefix; memory bounded by the bans of one window."""

    def __init__(self, policy: Escalation) -> None:
        self.policy = policy
        self.by_cover: dict[Prefix, dict[Prefix, Member]] = {}
        self.order: deque[tuple[float, Prefix, Prefix]] = deque()  # (at, cover, member), in arrival order

    def add(self, member: Member, now: float) -> None:
        cover = escalation_cover(member.prefix, self.policy)
        if cover is None or member.at < now - self.policy.window:
            return
        self._prune(now)
        kept = self.by_cover.setdefault(cover, {})
        old = kept.get(member.prefix)
        if old is None or member.at >= old.at:
            kept[member.prefix] = member
            self.order.append((member.at, cover, member.prefix))

    def near(self, member: Prefix) -> tuple[Member, ...]:
        cover = escalation_cover(member, self.policy)
        return tuple(self.by_cover.get(cover, {}).values()) if cover is not None else ()

    def _prune(self, now: float) -> None:
        since = now - self.policy.window
        while self.order and self.order[0][0] < since:
            _, cover, prefix = self.order.popleft()
            kept = self.by_cover.get(cover, {})
            if prefix in kept and kept[prefix].at < since:
                del kept[prefix]
                if not kept:
                    del self.by_cover[cover]
