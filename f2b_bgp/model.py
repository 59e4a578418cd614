"""The typed values every layer passes: prefix, route states, results, views, status.

Stdlib only (no netaddr, pyroute2 or exabgp): the store returns these, the
service returns them, and each API transport serialises them with `to_wire`,
the one place where they become JSON. docs/contracts.md is checked against
them by a test.
"""

from __future__ import annotations

import dataclasses
import operator
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Prefix(tuple):  # type: ignore[type-arg]  # of (version, value, length)
    """One canonical network: version 4 or 6, the network address as an int, the length.

    Immutable and hashable; ordered by family, address, length. Built only from
    already validated input (guards, our own store, a backend's dump): parse()
    accepts the canonical forms that str() produces and the host forms a
    kernel or ExaBGP prints. A tuple underneath, so that hashing, comparing and
    sorting (a dozen dict and set operations per ban) run in C.
    """

    __slots__ = ()

    def __new__(cls, version: int, value: int, length: int) -> Prefix:
        width = 32 if version == 4 else 128 if version == 6 else 0
        if not width or not 0 <= length <= width or not 0 <= value < 1 << width:
            raise ValueError(f"not a prefix: version={version} value={value} length={length}")
        if value & ((1 << (width - length)) - 1):
            address = socket.inet_ntop(socket.AF_INET if version == 4 else socket.AF_INET6,
                                       value.to_bytes(width // 8, "big"))
            raise ValueError(f"host bits set in {address}/{length}")
        return tuple.__new__(cls, (version, value, length))

    version = property(operator.itemgetter(0))
    value = property(operator.itemgetter(1))
    length = property(operator.itemgetter(2))

    def __repr__(self) -> str:
        return f"Prefix({self})"

    @classmethod
    def parse(cls, text: str) -> Prefix:
        address, slash, length = text.partition("/")
        version = 6 if ":" in address else 4
        family, width = (socket.AF_INET6, 128) if version == 6 else (socket.AF_INET, 32)
        try:
            packed = socket.inet_pton(family, address)
        except OSError as err:
            raise ValueError(f"not an address: {text[:64]!r}") from err
        if slash and not (length.isascii() and length.isdigit() and len(length) <= 3):
            raise ValueError(f"bad prefix length: {text[:64]!r}")
        return cls(version, int.from_bytes(packed, "big"), int(length) if slash else width)

    # the properties below run several times per ban: they index the tuple instead of calling each other

    @property
    def width(self) -> int:
        return 32 if self[0] == 4 else 128

    @property
    def packed(self) -> bytes:
        return self[1].to_bytes(4, "big") if self[0] == 4 else self[1].to_bytes(16, "big")

    @property
    def address(self) -> str:
        if self[0] == 4:
            return socket.inet_ntop(socket.AF_INET, self[1].to_bytes(4, "big"))
        return socket.inet_ntop(socket.AF_INET6, self[1].to_bytes(16, "big"))

    @property
    def is_host(self) -> bool:
        return self[2] == (32 if self[0] == 4 else 128)

    def __str__(self) -> str:
        return f"{self.address}/{self[2]}"


class RouteState(str, Enum):
    """A wanted prefix is active once every backend acknowledged it, pending until then.

    `expired` is only a ban reply: the ban's start time plus its bantime is
    already past (a restored ban that ran out), so nothing was stored.
    """

    ACTIVE = "active"
    PENDING = "pending"
    EXPIRED = "expired"


@dataclass(frozen=True)
class BackendState:
    """One backend's view of one prefix."""

    state: RouteState
    error: str = ""


@dataclass(frozen=True)
class Claim:
    """One owner's ban on a prefix."""

    prefix: Prefix
    jail: str
    reason: str
    created: float
    expires: float | None  # None: never (config forbids it through daemon.max_bantime)
    address: str = ""  # the banned address, when the claim is on a wider prefix than it
    origin: str = ""  # "widened", "escalated" or "" (the prefix as banned)


@dataclass(frozen=True)
class Owner:
    jail: str
    reason: str
    created: float
    expires: float | None
    address: str = ""
    origin: str = ""


@dataclass(frozen=True)
class BanView:
    """A blackholed prefix as `list` and `show` present it."""

    prefix: Prefix
    state: RouteState
    expires: float | None  # when the route goes: the last owner's expiry
    owners: tuple[Owner, ...]
    backends: Mapping[str, BackendState]


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    guard: str = ""
    reason: str = ""


@dataclass(frozen=True)
class BanResult:
    prefix: Prefix
    state: RouteState
    expires: float | None  # this claim's expiry
    route_expires: float | None  # the route's: the latest of every owner's
    new: bool
    address: str = ""  # the banned address, when PREFIX is the wider prefix claimed for it
    escalated: Prefix | None = None  # the covering prefix this ban escalated to


@dataclass(frozen=True)
class UnbanResult:
    prefix: Prefix
    removed: bool
    remaining: tuple[str, ...]
    withdrawn: bool


@dataclass(frozen=True)
class WithdrawResult:
    prefix: Prefix
    removed: tuple[str, ...]
    covered: tuple[Prefix, ...] = ()  # blackholed prefixes that still contain PREFIX


@dataclass(frozen=True)
class FlushResult:
    removed: int  # claims
    prefixes: int  # routes withdrawn


@dataclass(frozen=True)
class Listing:
    bans: tuple[BanView, ...]
    next: str | None  # ask again with after=next for the following page; None: this was the last


@dataclass(frozen=True)
class ShowResult:
    prefix: Prefix
    blackholed: bool
    bans: tuple[BanView, ...]  # every stored prefix containing PREFIX, the most specific first
    verdict: Verdict


@dataclass(frozen=True)
class Drift:
    """One backend compared with the store."""

    checked: bool  # False: the backend could not tell what it holds
    missing: int = 0
    stale: int = 0
    repaired: bool = False


@dataclass(frozen=True)
class ReconcileReport:
    why: str
    at: float
    guard_withdrawn: tuple[Prefix, ...]
    backends: Mapping[str, Drift]


@dataclass(frozen=True)
class SyncResult:
    report: ReconcileReport


@dataclass(frozen=True)
class BridgeInfo:
    pid: int | None
    exabgp_pid: int | None
    connected: float


@dataclass(frozen=True)
class PeerView:
    state: str
    since: float
    reason: str = ""


@dataclass(frozen=True)
class BackendStatus:
    ready: bool
    pending: int = 0
    unaccounted: int = 0  # routes of ours kept because a new store cannot account for them
    last_error: str = ""
    settings: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    counters: Mapping[str, int] = field(default_factory=dict)
    bridge: BridgeInfo | None = None
    peers: Mapping[str, PeerView] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteCounts:
    active: int
    pending: int


@dataclass(frozen=True)
class Limits:
    max_routes: int
    max_rate: int
    bans_last_minute: int


@dataclass(frozen=True)
class StoreHealth:
    """Whether the last write reached the disk, and since when it has not."""

    writable: bool = True
    since: float | None = None
    error: str = ""


@dataclass(frozen=True)
class QueueStatus:
    """The fail2ban queue (f2b_bgp/spool.py)."""

    path: str
    depth: int  # complete lines not applied yet
    oldest_age: float | None  # seconds since the daemon first saw the oldest of them
    applied: int  # lines since the daemon started
    refused: int  # a guard or limit said no
    malformed: int
    error: str  # why the queue is not read ("" when it is)


@dataclass(frozen=True)
class Status:
    version: str
    uptime: float
    routes: RouteCounts
    limits: Limits
    store: StoreHealth
    backends: Mapping[str, BackendStatus]
    last_reconcile: ReconcileReport | None
    queue: QueueStatus | None  # None until the daemon has opened it


@dataclass(frozen=True)
class Event:
    """One line of the daemon's event log."""

    ts: float
    event: str
    prefix: str
    jail: str
    detail: str


@dataclass(frozen=True)
class EventList:
    events: tuple[Event, ...]  # the newest that match, oldest first


@dataclass(frozen=True)
class Pong:
    version: str


_PLAIN = frozenset((str, int, float, bool, type(None)))
_FIELDS: dict[type, tuple[str, ...] | None] = {}  # a dataclass's field names; None: the type is no dataclass


def to_wire(value: Any) -> Any:
    """JSON-ready form of a model value: dataclasses as objects, enums and prefixes as text."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is Prefix:
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if kind not in _FIELDS:
        _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(kind)) if dataclasses.is_dataclass(kind) else None
    names = _FIELDS[kind]
    if names is not None:
        out = {}
        for name in names:  # most fields are plain: no call for them (an answer per ban goes through here)
            field_value = getattr(value, name)
            out[name] = field_value if type(field_value) in _PLAIN else to_wire(field_value)
        return out
    if isinstance(value, Mapping):
        return {str(k): to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    return value
