"""Pure guards: may this prefix be blackholed? A verdict with a reason, no I/O."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, cached_property
from importlib.resources import files
from typing import Generic, TypeVar

from netaddr import IPNetwork

from f2b_bgp.address import InvalidAddress, parse, to_prefix
from f2b_bgp.model import Prefix

KINDS = ("protected", "peer", "next-hop", "host-address")
GUARDS = ("input", "length", *KINDS, "connected", "special", "max-routes", "max-rate")
_REACHABLE = ("yes", "no", "n/a")

Label = TypeVar("Label")


class _PrefixIndex(Generic[Label]):
    """Labelled prefixes; finds one overlapping a query with a dict probe per stored
    prefix length plus one bisection, so thousands of entries stay cheap."""

    def __init__(self, entries: Iterable[tuple[IPNetwork, Label]]) -> None:
        self._labels: dict[tuple[int, int, int], Label] = {}
        for prefix, label in entries:
            self._labels.setdefault((prefix.version, prefix.first, prefix.prefixlen), label)
        self._keys = sorted(self._labels)
        self._lengths = {
            version: sorted({length for v, _, length in self._keys if v == version}, reverse=True) for version in (4, 6)
        }

    def container(self, prefix: Prefix) -> Label | None:
        """The most specific entry equal to or containing prefix."""
        width = prefix.width
        for length in self._lengths[prefix.version]:
            if length <= prefix.length:
                start = prefix.value >> (width - length) << (width - length)
                label = self._labels.get((prefix.version, start, length))
                if label is not None:
                    return label
        return None

    def overlap(self, prefix: Prefix) -> Label | None:
        """An entry containing prefix, else the largest, lowest entry inside it."""
        found = self.container(prefix)
        if found is not None:
            return found
        i = bisect.bisect_left(self._keys, (prefix.version, prefix.value, prefix.length + 1))
        last = prefix.value | ((1 << (prefix.width - prefix.length)) - 1)
        if i < len(self._keys) and self._keys[i][0] == prefix.version and self._keys[i][1] <= last:
            return self._labels[self._keys[i]]
        return None


@dataclass(frozen=True)
class ProtectedPrefix:
    prefix: IPNetwork
    name: str = ""  # the operator's label, shown in the reason
    kind: str = "protected"  # one of KINDS; also the guard code of a refusal

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not self.name.isprintable():
            raise ValueError(f"name must be printable, not {self.name!r}")  # it ends up in one-line reasons

    def __str__(self) -> str:
        return f"{self.prefix.cidr} ({self.name})" if self.name else str(self.prefix.cidr)


@dataclass(frozen=True)
class GuardPolicy:
    """What the guards enforce. netaddr's IPNetwork is mutable: never change one
    held here, the lookup indexes below are built once per policy."""

    protected: tuple[ProtectedPrefix, ...] = ()
    protect_host_addresses: bool = True
    allow_empty_protected: bool = False
    min_length_ipv4: int = 32  # shortest prefix length accepted
    min_length_ipv6: int = 128
    allow_special: tuple[IPNetwork, ...] = ()  # special-purpose ranges allowed anyway
    max_routes: int = 10000
    max_rate: int = 600  # new bans per minute

    # cached_property writes the instance __dict__ directly, so it works on a frozen dataclass.
    @cached_property
    def _protected_index(self) -> _PrefixIndex[ProtectedPrefix]:
        return _PrefixIndex((entry.prefix, entry) for entry in self.protected)

    @cached_property
    def _allowed_index(self) -> _PrefixIndex[IPNetwork]:
        return _PrefixIndex((prefix, prefix) for prefix in self.allow_special)


@dataclass(frozen=True)
class HostFacts:
    """Gathered by I/O elsewhere: interface addresses with their prefix length."""

    addresses: tuple[IPNetwork, ...] = ()

    @cached_property
    def _own_index(self) -> _PrefixIndex[IPNetwork]:
        return _PrefixIndex((IPNetwork(address.ip), address) for address in self.addresses)

    @cached_property
    def _connected_index(self) -> _PrefixIndex[IPNetwork]:
        return _PrefixIndex((address.cidr, address) for address in self.addresses)


@dataclass(frozen=True)
class Accepted:
    prefix: Prefix


@dataclass(frozen=True)
class Refused:
    guard: str
    reason: str

    def __str__(self) -> str:
        return f"{self.guard}: {self.reason}"


Verdict = Accepted | Refused


def check_text(text: str, policy: GuardPolicy, host: HostFacts) -> Verdict:
    try:
        prefix = parse(text)
    except InvalidAddress as error:
        return Refused("input", str(error))
    return _check(prefix, policy, host)


def check_prefix(prefix: Prefix | IPNetwork, policy: GuardPolicy, host: HostFacts) -> Verdict:
    if isinstance(prefix, IPNetwork):
        # netaddr's == ignores host bits, so compare the address with its network.
        if prefix.ip != prefix.network:
            return Refused("input", f"host bits set in {prefix}, the network would be {prefix.cidr}")
        prefix = to_prefix(prefix)
    return _check(prefix, policy, host)


def _check(prefix: Prefix, policy: GuardPolicy, host: HostFacts) -> Verdict:
    for guard in _STATIC_GUARDS:
        refused = guard(prefix, policy, host)
        if refused is not None:
            return refused
    return Accepted(prefix)


def check_capacity(active: int, recent: int, policy: GuardPolicy) -> Refused | None:
    """For one new prefix: active routes now, new bans in the last 60 s."""
    if active >= policy.max_routes:
        return Refused("max-routes", f"{active} routes active, the limit is {policy.max_routes} (max_routes)")
    if recent >= policy.max_rate:
        return Refused(
            "max-rate", f"{recent} new bans in the last minute, the limit is {policy.max_rate} per minute (max_rate)"
        )
    return None


def special_purpose(prefix: Prefix | IPNetwork) -> str | None:
    """The special-purpose or non-global block overlapping prefix, ignoring allow_special."""
    block = _special_index().overlap(prefix if isinstance(prefix, Prefix) else to_prefix(prefix))
    return None if block is None else str(block)


def empty_protection(policy: GuardPolicy, host: HostFacts) -> bool:
    """No protected prefix (peers and next-hops do not count) and no host address in use."""
    protected = any(entry.kind == "protected" for entry in policy.protected)
    own = policy.protect_host_addresses and bool(host.addresses)
    return not protected and not own


def _length(prefix: Prefix, policy: GuardPolicy, host: HostFacts) -> Refused | None:
    if prefix.version == 4:
        minimum, key = policy.min_length_ipv4, "min_length_ipv4"
    else:
        minimum, key = policy.min_length_ipv6, "min_length_ipv6"
    if prefix.length < minimum:
        return Refused("length", f"{prefix} is shorter than /{minimum} ({key})")
    return None


def _protected(prefix: Prefix, policy: GuardPolicy, host: HostFacts) -> Refused | None:
    entry = policy._protected_index.overlap(prefix)
    return None if entry is None else Refused(entry.kind, str(entry))


def _host(prefix: Prefix, policy: GuardPolicy, host: HostFacts) -> Refused | None:
    if not policy.protect_host_addresses:
        return None
    own = host._own_index.overlap(prefix)
    if own is not None:
        return Refused("host-address", f"{own.ip} (address of this host)")
    connected = host._connected_index.overlap(prefix)
    if connected is not None:
        return Refused("connected", f"{connected.cidr} (connected network of {connected.ip})")
    return None


def _special(prefix: Prefix, policy: GuardPolicy, host: HostFacts) -> Refused | None:
    if policy._allowed_index.container(prefix) is not None:
        return None
    block = special_purpose(prefix)
    return None if block is None else Refused("special", block)


_STATIC_GUARDS: tuple[Callable[[Prefix, GuardPolicy, HostFacts], Refused | None], ...] = (
    _length,
    _protected,
    _host,
    _special,
)


@dataclass(frozen=True)
class _Block:
    prefix: IPNetwork
    reachable: str
    reference: str
    name: str

    def __str__(self) -> str:
        scope = ", not globally reachable" if self.reachable == "no" else ""
        return f"{self.prefix} {self.name} ({self.reference}{scope})"


def _parse_registry(text: str) -> list[_Block]:
    blocks = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split(None, 3)
        if len(fields) != 4 or fields[1] not in _REACHABLE:
            raise ValueError(f"special_purpose.txt line {number}: expected 'prefix reachable reference name'")
        prefix = IPNetwork(fields[0])
        if prefix.ip != prefix.network:
            raise ValueError(f"special_purpose.txt line {number}: host bits set in {fields[0]}")
        blocks.append(_Block(prefix, fields[1], fields[2], fields[3]))
    return blocks


@cache
def _special_index() -> _PrefixIndex[_Block]:
    text = files("f2b_bgp.data").joinpath("special_purpose.txt").read_text(encoding="ascii")
    return _PrefixIndex((block.prefix, block) for block in _parse_registry(text))
