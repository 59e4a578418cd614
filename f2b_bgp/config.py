"""Load one TOML file into frozen, typed objects; report every problem with its dotted path."""

from __future__ import annotations

import os
import re
import sysconfig
import tomllib
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, TypeVar

from netaddr import AddrFormatError, IPAddress, IPNetwork

from . import defaults
from .errors import ConfigError
from .guards import GuardPolicy, ProtectedPrefix

DEFAULT_PATH = Path(defaults.CONFIG_PATH)
# also `f2b-bgp exabgp-bridge --socket`'s default, written there again to keep config out of the bridge's start-up
DEFAULT_BRIDGE_SOCKET = Path(defaults.BRIDGE_SOCKET)
BLACKHOLE = defaults.BLACKHOLE
MAIN_TABLE = 254  # the only kernel table FRR's zebra imports

T = TypeVar("T")
# Names end up in refusals and in rendered firewall configs: no quotes, newlines or '#'.
NAME = re.compile(r"[A-Za-z0-9 ._,:/()+-]{0,64}", re.ASCII)


class RouteType(str, Enum):
    BLACKHOLE = "blackhole"
    UNREACHABLE = "unreachable"
    PROHIBIT = "prohibit"


@dataclass(frozen=True)
class DaemonConfig:
    socket: Path
    socket_mode: int
    socket_group: str
    database: Path
    default_bantime: int
    max_bantime: int
    reconcile_interval: float
    retry_interval: float
    log_level: str
    events_max_age: float  # seconds an event is kept
    events_max_rows: int  # events kept at most (the oldest go first)


@dataclass(frozen=True)
class Peer:
    name: str
    address: IPAddress
    asn: int
    local_address: IPAddress | None


@dataclass(frozen=True)
class BgpConfig:
    local_as: int
    router_id: IPAddress
    communities: tuple[str, ...]  # BLACKHOLE first, then the configured extras
    next_hop_ipv4: IPAddress | None
    next_hop_ipv6: IPAddress | None
    discard_ipv4: IPAddress
    discard_ipv6: IPAddress
    prefix_limit: int
    peers: tuple[Peer, ...]


@dataclass(frozen=True)
class KernelConfig:
    enabled: bool
    route_type: RouteType
    table: int
    protocol: int
    metric: int


@dataclass(frozen=True)
class ExabgpConfig:
    enabled: bool
    bridge_socket: Path
    bridge_user: str  # ExaBGP's user: the only one whose bridge connection is accepted
    bridge_program: Path  # the f2b-bgp that ExaBGP runs as `PROGRAM exabgp-bridge`
    batch_size: int
    ack_timeout: float
    max_in_flight: int


@dataclass(frozen=True)
class Config:
    path: Path
    daemon: DaemonConfig
    guards: GuardPolicy
    bgp: BgpConfig
    kernel: KernelConfig
    exabgp: ExabgpConfig


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("F2B_BGP_CONFIG") or DEFAULT_PATH)


def load_config(path: Path) -> Config:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError([f"cannot read: {err.strerror}"], str(path)) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"not valid TOML: {err}"], str(path)) from err
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path = DEFAULT_PATH) -> Config:
    r = _Reader(raw)
    daemon, guards = _daemon(r.section("daemon")), _guards(r.section("guards"))
    bgp, backends = _bgp(r.section("bgp")), r.section("backends")
    config = Config(
        path=path,
        daemon=daemon,
        guards=replace(guards, protected=guards.protected + infrastructure(bgp)),
        bgp=bgp,
        kernel=_kernel(backends.section("kernel")),
        exabgp=_exabgp(backends.section("exabgp")),
    )
    r.finish()
    _cross_check(r, config)
    if r.problems:
        raise ConfigError(r.problems, str(path))
    return config


def _cross_check(r: _Reader, config: Config) -> None:
    """Keys that are each valid but cannot work together. A key with a problem of its own
    holds its default here, so it is left out: no follow-up errors."""
    if not (config.kernel.enabled or config.exabgp.enabled) and not r.failed("backends.kernel.enabled",
                                                                            "backends.exabgp.enabled"):
        r.problem("backends", "no backend enabled (backends.kernel.enabled, backends.exabgp.enabled): "
                  "nothing would be blackholed")
    bgp = r.table.get("bgp", {})
    if config.exabgp.enabled and isinstance(bgp, dict) and "next_hop_ipv6" not in bgp:
        r.problem("bgp.next_hop_ipv6", "required with backends.exabgp: ExaBGP has no 'self' next-hop for "
                  "IPv6 routes on an IPv4 session")
    limit = config.bgp.prefix_limit
    if config.guards.max_routes > limit and not r.failed("guards.max_routes", "bgp.prefix_limit"):
        r.problem("guards.max_routes", f"{config.guards.max_routes} is above bgp.prefix_limit ({limit}): past "
                  "that the firewalls close the session and every blackhole goes; raise bgp.prefix_limit "
                  "(and the firewalls' limit) or lower max_routes")


def config_warnings(config: Config) -> list[str]:
    """What is valid and works for the daemon, but is unusual enough to say (check-config)."""
    found = []
    if config.kernel.enabled and config.kernel.table != MAIN_TABLE:
        found.append(f"backends.kernel.table: {config.kernel.table} is not the main table ({MAIN_TABLE}): FRR's "
                     "zebra imports only the main table, so the frr-injector snippet would announce none of "
                     "these routes")
    program = config.exabgp.bridge_program
    if config.exabgp.enabled and not (program.is_file() and os.access(program, os.X_OK)):
        found.append(f"backends.exabgp.bridge_program: {program} is not an executable file on this host: "
                     "ExaBGP cannot start the bridge here (fine if exabgp.conf is for another host)")
    for index, peer in enumerate(config.bgp.peers):
        if peer.local_address is None:
            found.append(f"bgp.peers[{index}].local_address: not set: `f2b-bgp peering` renders no snippet "
                         "for this peer, nor exabgp.conf (the firewall knows the injector by this address)")
    return found


class _Reader:
    """Walks one table, records every problem with its dotted path, and the keys it used."""

    def __init__(self, table: Any, path: str = "", problems: list[str] | None = None) -> None:
        self.path = path
        self.problems = [] if problems is None else problems
        self.used: set[str] = set()
        self.children: list[_Reader] = []
        if not isinstance(table, dict):
            self.problem(path or "(top)", f"must be a table, not {type(table).__name__}")
            table = {}
        self.table = table

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def failed(self, *keys: str) -> bool:
        """Whether any of KEYS (or anything inside one) has a problem already."""
        return any(p.startswith(f"{key}:") or p.startswith(f"{key}.") or p.startswith(f"{key}[")
                   for p in self.problems for key in keys)

    def section(self, name: str) -> _Reader:
        self.used.add(name)
        child = _Reader(self.table.get(name, {}), self.key(name), self.problems)
        self.children.append(child)
        return child

    def get(self, name: str, kind: type[T], default: T) -> T:
        self.used.add(name)
        value = self.table.get(name, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problem(self.key(name), f"must be {kind.__name__}, not {type(value).__name__}")
            return default
        return value

    def number(self, name: str, kind: type[T], default: T, low: float, high: float) -> T:
        value = self.get(name, kind, default)
        if not low <= value <= high:  # type: ignore[operator]
            self.problem(self.key(name), f"must be between {low} and {high}, not {value}")
            return default
        return value

    def parsed(self, name: str, parse: Callable[[Any], T], default: T) -> T:
        self.used.add(name)
        if name not in self.table:
            return default
        try:
            return parse(self.table[name])
        except (ValueError, TypeError, AddrFormatError) as err:
            self.problem(self.key(name), str(err) or "invalid value")
            return default

    def items(self, name: str) -> list[tuple[str, Any]]:
        self.used.add(name)
        value = self.table.get(name, [])
        if not isinstance(value, list):
            self.problem(self.key(name), f"must be an array, not {type(value).__name__}")
            return []
        return [(f"{self.key(name)}[{i}]", item) for i, item in enumerate(value)]

    def finish(self) -> None:
        for unknown in sorted(set(self.table) - self.used):
            self.problem(self.key(unknown), "unknown key")
        for child in self.children:
            child.finish()


def _address(value: Any) -> IPAddress:
    if not isinstance(value, str):
        raise TypeError(f"must be an address string, not {type(value).__name__}")
    return IPAddress(value)


def _address_of(version: int) -> Callable[[Any], IPAddress]:
    def parse(value: Any) -> IPAddress:
        address = _address(value)
        if address.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        return address

    return parse


def _network(value: Any) -> IPNetwork:
    if not isinstance(value, str):
        raise TypeError(f"must be a prefix string, not {type(value).__name__}")
    net = IPNetwork(value)
    if net.ip != net.network:
        raise ValueError(f"host bits set in {value!r}, did you mean {net.cidr}?")
    return net


def _name(value: Any) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValueError("must be at most 64 letters, digits, spaces or ._,:/()+- characters")
    return value


def _user(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", value, re.ASCII):
        raise ValueError("must be a system user name")
    return value


def default_bridge_program() -> Path:
    """The f2b-bgp script of this installation: /usr/local/bin on Debian's Python, bin/ in a virtualenv."""
    return Path(sysconfig.get_path("scripts")) / "f2b-bgp"


def _program(value: Any) -> Path:
    # ExaBGP searches /etc/exabgp, the config's directory and every $PATH entry for a relative
    # program and runs the last match, which may be another installation's f2b-bgp.
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("must be an absolute path: ExaBGP runs the last match of a relative one among several places")
    if any(c.isspace() or c in ';{}[]"\'' for c in value):
        raise ValueError("no spaces, quotes, ';', braces or brackets: it goes on ExaBGP's run line")
    return Path(value)


def _octal_mode(value: Any) -> int:
    if not isinstance(value, str) or not value.isdigit():
        raise ValueError('must be an octal string such as "0660"')
    return int(value, 8)


def _community(value: Any) -> str:
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 2 or not all(p.isdigit() and int(p) < 65536 for p in parts):
        raise ValueError(f"{value!r} is not a standard community ASN:VALUE")
    return f"{int(parts[0])}:{int(parts[1])}"


def _daemon(r: _Reader) -> DaemonConfig:
    return DaemonConfig(
        socket=Path(r.get("socket", str, defaults.API_SOCKET)),
        socket_mode=r.parsed("socket_mode", _octal_mode, 0o660),
        socket_group=r.get("socket_group", str, ""),
        database=Path(r.get("database", str, defaults.DATABASE)),
        default_bantime=r.number("default_bantime", int, 3600, 1, 10**9),
        max_bantime=r.number("max_bantime", int, 30 * 86400, 1, 10**9),
        reconcile_interval=r.number("reconcile_interval", float, 60.0, 0.1, 86400),
        retry_interval=r.number("retry_interval", float, 5.0, 0.05, 3600),
        log_level=r.parsed("log_level", _log_level, "info"),
        events_max_age=r.number("events_max_days", float, 30.0, 0.001, 3650) * 86400,
        events_max_rows=r.number("events_max_rows", int, 200_000, 1000, 10**8),
    )


def _log_level(value: Any) -> str:
    if value not in ("debug", "info", "warning", "error"):
        raise ValueError("must be one of debug, info, warning, error")
    return str(value)


def _guards(r: _Reader) -> GuardPolicy:
    """The guards' own keys; parse_config adds the infrastructure to protected."""
    protected = [_protected(r, key, item) for key, item in r.items("protected")]
    return GuardPolicy(
        protected=tuple(p for p in protected if p),
        protect_host_addresses=r.get("protect_host_addresses", bool, True),
        allow_empty_protected=r.get("allow_empty_protected", bool, False),
        min_length_ipv4=r.number("min_length_ipv4", int, 32, 8, 32),
        min_length_ipv6=r.number("min_length_ipv6", int, 128, 16, 128),
        allow_special=tuple(n for key, item in r.items("allow_special") if (n := _item(r, key, item, _network))),
        max_routes=r.number("max_routes", int, 10000, 1, 10**7),
        max_rate=r.number("max_rate", int, 600, 1, 10**7),
    )


def _item(r: _Reader, key: str, value: Any, parse: Callable[[Any], T]) -> T | None:
    try:
        return parse(value)
    except (ValueError, TypeError, AddrFormatError) as err:
        r.problem(key, str(err) or "invalid value")
        return None


def _protected(r: _Reader, key: str, item: Any) -> ProtectedPrefix | None:
    if isinstance(item, dict):
        entry = _Reader(item, key, r.problems)
        prefix = entry.parsed("prefix", _network, None)
        name = entry.parsed("name", _name, "")
        entry.finish()
        if "prefix" not in entry.table:
            entry.problem(entry.key("prefix"), "is required")
        return ProtectedPrefix(prefix, name) if prefix is not None else None
    prefix = _item(r, key, item, _network)
    return ProtectedPrefix(prefix) if prefix is not None else None


def infrastructure(bgp: BgpConfig) -> tuple[ProtectedPrefix, ...]:
    """Never blackholed: the BGP peers and the injector's session addresses, the next-hops
    announced, and the discard next-hops the firewalls route to Null0 (a blackhole for one
    would resolve through itself)."""
    found = [_host(peer.address, peer.name, "peer") for peer in bgp.peers]
    found += [_host(peer.local_address, f"{peer.name} local_address", "host-address")
              for peer in bgp.peers if peer.local_address is not None]
    found += [_host(address, key, "next-hop")
              for key, address in (("next_hop_ipv4", bgp.next_hop_ipv4), ("next_hop_ipv6", bgp.next_hop_ipv6))
              if address is not None]
    return tuple(found) + discard_next_hops(bgp)


def discard_next_hops(bgp: BgpConfig) -> tuple[ProtectedPrefix, ...]:
    return tuple(_host(address, key, "next-hop")
                 for key, address in (("discard_ipv4", bgp.discard_ipv4), ("discard_ipv6", bgp.discard_ipv6)))


def _host(address: IPAddress, name: str, kind: str) -> ProtectedPrefix:
    return ProtectedPrefix(IPNetwork(f"{address}/{address.netmask_bits()}"), name, kind)


def _peer(r: _Reader, key: str, item: Any) -> Peer | None:
    p = _Reader(item, key, r.problems)
    if not isinstance(item, dict):
        return None  # reported as "must be a table"; its fields would only repeat it
    peer = Peer(
        name=p.parsed("name", _name, ""),
        address=p.parsed("address", _address, None),  # type: ignore[arg-type]
        asn=p.number("asn", int, 0, 1, 2**32 - 1),
        local_address=p.parsed("local_address", _address, None),
    )
    p.finish()
    for field in ("address", "asn"):
        if field not in p.table:
            p.problem(p.key(field), "is required")
    if peer.address is not None and peer.local_address is not None \
            and peer.local_address.version != peer.address.version:
        p.problem(p.key("local_address"), f"{peer.local_address} is not IPv{peer.address.version} like address "
                  f"{peer.address}: one session has one address family")
    return peer if peer.address is not None else None


def _bgp(r: _Reader) -> BgpConfig:
    extra = tuple(c for key, item in r.items("communities") if (c := _item(r, key, item, _community)))
    return BgpConfig(
        local_as=r.number("local_as", int, 65001, 1, 2**32 - 1),
        router_id=r.parsed("router_id", _address_of(4), IPAddress("0.0.0.0")),  # a BGP identifier is 32 bits
        communities=(BLACKHOLE,) + tuple(c for c in extra if c != BLACKHOLE),
        next_hop_ipv4=r.parsed("next_hop_ipv4", _address_of(4), None),
        next_hop_ipv6=r.parsed("next_hop_ipv6", _address_of(6), None),
        discard_ipv4=r.parsed("discard_ipv4", _address_of(4), IPAddress("192.0.2.1")),
        discard_ipv6=r.parsed("discard_ipv6", _address_of(6), IPAddress("100::1")),
        prefix_limit=r.number("prefix_limit", int, 10000, 1, 10**7),
        peers=tuple(p for key, item in r.items("peers") if (p := _peer(r, key, item))),
    )


def _kernel(r: _Reader) -> KernelConfig:
    protocol = r.number("protocol", int, 201, 5, 255)
    if 186 <= protocol <= 197:
        r.problem(r.key("protocol"), f"{protocol} belongs to FRR (186-197); zebra would ignore these routes")
    return KernelConfig(
        enabled=r.get("enabled", bool, True),
        route_type=r.parsed("route_type", RouteType, RouteType.BLACKHOLE),
        table=r.number("table", int, MAIN_TABLE, 1, 2**32 - 1),
        protocol=protocol,
        metric=r.number("metric", int, 0, 0, 2**32 - 1),
    )


def _exabgp(r: _Reader) -> ExabgpConfig:
    return ExabgpConfig(
        enabled=r.get("enabled", bool, False),
        bridge_socket=Path(r.get("bridge_socket", str, str(DEFAULT_BRIDGE_SOCKET))),
        bridge_user=r.parsed("bridge_user", _user, "f2b-bgp"),
        bridge_program=r.parsed("bridge_program", _program, default_bridge_program()),
        batch_size=r.number("batch_size", int, 200, 1, 5000),
        ack_timeout=r.number("ack_timeout", float, 10.0, 0.1, 600),
        max_in_flight=r.number("max_in_flight", int, 2000, 1, 100000),
    )
