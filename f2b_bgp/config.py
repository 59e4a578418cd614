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
from .aggregation import AggregationPolicy, Escalation
from .errors import ConfigError
from .guards import GuardPolicy, ProtectedPrefix
from .names import name_problem
from .tokens import OPERATIONS, WIDE_OPERATIONS, Token

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
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class HttpsConfig:
    listen: tuple[Listen, ...]  # empty: the HTTPS API is off
    certificate: Path | None
    key: Path | None
    client_ca: Path | None  # set: clients must present a certificate it signed (mutual TLS)


@dataclass(frozen=True)
class ApiConfig:
    https: HttpsConfig
    metrics_listen: tuple[Listen, ...]  # plain HTTP, /metrics only
    tokens: tuple[Token, ...]  # read again at every request: a reload revokes at once


@dataclass(frozen=True)
class RemoteConfig:
    """One central injector this daemon forwards its claims to (backend "remote")."""

    name: str
    url: str
    token_file: Path
    ca_file: Path | None
    client_certificate: Path | None
    client_key: Path | None
    timeout: float


@dataclass(frozen=True)
class Config:
    path: Path
    daemon: DaemonConfig
    guards: GuardPolicy
    bgp: BgpConfig
    kernel: KernelConfig
    exabgp: ExabgpConfig
    api: ApiConfig = ApiConfig(HttpsConfig((), None, None, None), (), ())
    remotes: tuple[RemoteConfig, ...] = ()
    aggregation: AggregationPolicy = AggregationPolicy()


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
        api=_api(r.section("api")),
        remotes=_remotes(backends),
        aggregation=_aggregation(r.section("aggregation")),
    )
    r.finish()
    _cross_check(r, config)
    if r.problems:
        raise ConfigError(r.problems, str(path))
    return config


def _cross_check(r: _Reader, config: Config) -> None:
    """Keys that are each valid but cannot work together. A key with a problem of its own
    holds its default here, so it is left out: no follow-up errors."""
    if not (config.kernel.enabled or config.exabgp.enabled or config.remotes) and not r.failed(
            "backends.kernel.enabled", "backends.exabgp.enabled", "backends.remote"):
        r.problem("backends", "no backend enabled (backends.kernel.enabled, backends.exabgp.enabled, "
                  "backends.remote): nothing would be blackholed")
    https = config.api.https
    if https.listen and (https.certificate is None or https.key is None) and not r.failed("api.https"):
        r.problem("api.https", "listen is set: certificate and key are required (the API speaks TLS only)")
    bgp = r.table.get("bgp", {})
    if config.exabgp.enabled and isinstance(bgp, dict) and "next_hop_ipv6" not in bgp:
        r.problem("bgp.next_hop_ipv6", "required with backends.exabgp: ExaBGP has no 'self' next-hop for "
                  "IPv6 routes on an IPv4 session")
    limit = config.bgp.prefix_limit
    if config.guards.max_routes > limit and not r.failed("guards.max_routes", "bgp.prefix_limit"):
        r.problem("guards.max_routes", f"{config.guards.max_routes} is above bgp.prefix_limit ({limit}): past "
                  "that the firewalls close the session and every blackhole goes; raise bgp.prefix_limit "
                  "(and the firewalls' limit) or lower max_routes")
    _check_aggregation(r, config)


def _check_aggregation(r: _Reader, config: Config) -> None:
    """Every widened or escalated prefix must be one the guards (and so the firewalls) accept."""
    guards, agg = config.guards, config.aggregation
    lengths = [("aggregation.ipv6_ban_length", agg.ipv6_ban_length)]
    lengths += [(f"aggregation.jails.{jail}.ipv6_ban_length", length) for jail, length in agg.jails.items()]
    for key, length in lengths:
        if length < guards.min_length_ipv6 and not r.failed(key, "guards.min_length_ipv6"):
            r.problem(key, f"/{length} is shorter than guards.min_length_ipv6 (/{guards.min_length_ipv6}) allows: "
                      f"every widened ban would be refused; set guards.min_length_ipv6 = {length} and re-render "
                      "the firewall snippets (f2b-bgp peering), or lengthen this")
    esc = agg.escalation
    if not esc.enabled:
        return
    for version, key in ((4, "ipv4_length"), (6, "ipv6_length")):
        shortest = guards.min_length_ipv4 if version == 4 else guards.min_length_ipv6
        if esc.length(version) < shortest and not r.failed(f"aggregation.escalation.{key}"):
            r.problem(f"aggregation.escalation.{key}", f"/{esc.length(version)} is shorter than "
                      f"guards.min_length_ipv{version} (/{shortest}) allows: every escalation would be refused; "
                      f"set guards.min_length_ipv{version} = {esc.length(version)} and re-render the firewall "
                      "snippets (f2b-bgp peering), or lengthen this")
    for key, length in lengths:
        if length < 128 and length <= esc.ipv6_length and not r.failed(key, "aggregation.escalation.ipv6_length"):
            r.problem(key, f"/{length} is not longer than aggregation.escalation.ipv6_length (/{esc.ipv6_length}): "
                      "an escalation needs several widened bans inside its covering prefix")
    if esc.bantime > config.daemon.max_bantime and not r.failed("aggregation.escalation.bantime"):
        r.problem("aggregation.escalation.bantime", f"{esc.bantime} is above daemon.max_bantime "
                  f"({config.daemon.max_bantime})")


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
    files = [("api.https.certificate", config.api.https.certificate), ("api.https.key", config.api.https.key),
             ("api.https.client_ca", config.api.https.client_ca)] if config.api.https.listen else []
    for index, remote in enumerate(config.remotes):
        files += [(f"backends.remote[{index}].{key}", getattr(remote, key))
                  for key in ("token_file", "ca_file", "client_certificate", "client_key")]
    for key, path in files:
        if path is not None and not os.access(path, os.R_OK):
            found.append(f"{key}: {path} is not readable here: the daemon will not start with it")
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


def _aggregation(r: _Reader) -> AggregationPolicy:
    default = r.number("ipv6_ban_length", int, 128, 16, 128)
    jails = r.section("jails")
    lengths = {}
    for jail in list(jails.table):
        jails.used.add(jail)
        if problem := name_problem(jail):
            jails.problem(jails.key(jail), f"a jail name {problem}")
            continue
        lengths[jail] = jails.section(jail).number("ipv6_ban_length", int, default, 16, 128)
    e = r.section("escalation")
    escalation = Escalation(
        enabled=e.get("enabled", bool, False),
        ipv4_length=e.number("ipv4_length", int, 24, 8, 31),
        ipv6_length=e.number("ipv6_length", int, 48, 16, 127),
        threshold=e.number("threshold", int, 5, 2, 10000),
        window=e.number("window", float, 600.0, 1, 7 * 86400),
        bantime=e.number("bantime", int, 86400, 1, 10**9),
    )
    return AggregationPolicy(default, lengths, escalation)


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


def _listen(value: Any) -> Listen:
    """"127.0.0.1:8443" or "[::1]:8443"; an address, never a name (no DNS at start)."""
    if not isinstance(value, str):
        raise TypeError(f"must be a string, not {type(value).__name__}")
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} is not ADDRESS:PORT (IPv6 as [ADDRESS]:PORT)")
    return Listen(str(_address(host)), int(port))


def _listens(r: _Reader, name: str, default: tuple[Listen, ...]) -> tuple[Listen, ...]:
    if name not in r.table:
        r.used.add(name)
        return default
    return tuple(x for key, item in r.items(name) if (x := _item(r, key, item, _listen)))


def _file(value: Any) -> Path:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError("must be an absolute path")
    return Path(value)


def token_name(value: Any) -> str:
    if not isinstance(value, str) or name_problem(value) or "/" in value or len(value) > 32:
        raise ValueError("must be 1 to 32 of A-Z a-z 0-9 . _ - @ : + (its claims are recorded as NAME/JAIL)")
    return value


def _sha256(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{64}", value):
        raise ValueError("must be 64 lower-case hex digits (from 'f2b-bgp token new NAME')")
    return value


def _operation(value: Any) -> str:
    if value not in OPERATIONS:
        raise ValueError(f"{value!r} is not one of {', '.join(OPERATIONS)}")
    return str(value)


def _token(r: _Reader, key: str, item: Any) -> Token | None:
    t = _Reader(item, key, r.problems)
    if not isinstance(item, dict):
        return None
    defaults = Token("", "")
    ops = tuple(op for k, i in t.items("operations") if (op := _item(t, k, i, _operation))) \
        if "operations" in t.table else defaults.operations
    token = Token(
        name=t.parsed("name", token_name, ""),
        sha256=t.parsed("sha256", _sha256, ""),
        operations=ops,
        own_claims_only=t.get("own_claims_only", bool, True),
        max_claims=t.number("max_claims", int, defaults.max_claims, 0, 10**7),
        max_rate=t.number("max_rate", int, defaults.max_rate, 0, 10**7),
        forbidden=tuple(str(n.cidr) for k, i in t.items("forbidden") if (n := _item(t, k, i, _network))),
    )
    t.finish()
    for field in ("name", "sha256"):
        if field not in t.table:
            t.problem(t.key(field), "is required")
    wide = sorted(WIDE_OPERATIONS & set(token.operations))
    if token.own_claims_only and wide:
        t.problem(t.key("operations"), f"{', '.join(wide)} act on every owner's bans: not with own_claims_only")
    return token if token.name and token.sha256 else None


def _api(r: _Reader) -> ApiConfig:
    h = r.section("https")
    https = HttpsConfig(
        listen=_listens(h, "listen", ()),
        certificate=h.parsed("certificate", _file, None),
        key=h.parsed("key", _file, None),
        client_ca=h.parsed("client_ca", _file, None),
    )
    metrics = r.section("metrics")
    tokens = tuple(t for key, item in r.items("tokens") if (t := _token(r, key, item)))
    seen: set[str] = set()
    for index, token in enumerate(tokens):
        if token.name in seen or token.sha256 in {t.sha256 for t in tokens[:index]}:
            r.problem(f"api.tokens[{index}]", f"name {token.name!r} or its sha256 used twice")
        seen.add(token.name)
    return ApiConfig(https, _listens(metrics, "listen", (Listen("127.0.0.1", 9180),)), tokens)


def _remotes(backends: _Reader) -> tuple[RemoteConfig, ...]:
    found = []
    for key, item in backends.items("remote"):
        b = _Reader(item, key, backends.problems)
        if not isinstance(item, dict):
            continue
        remote = RemoteConfig(
            name=b.parsed("name", token_name, ""),
            url=b.parsed("url", _https_url, ""),
            token_file=b.parsed("token_file", _file, Path("")),
            ca_file=b.parsed("ca_file", _file, None),
            client_certificate=b.parsed("client_certificate", _file, None),
            client_key=b.parsed("client_key", _file, None),
            timeout=b.number("timeout", float, 5.0, 0.1, 300),
        )
        b.finish()
        for field in ("name", "url", "token_file"):
            if field not in b.table:
                b.problem(b.key(field), "is required")
        if remote.name in ("kernel", "exabgp") or remote.name in {f.name for f in found}:
            b.problem(b.key("name"), f"{remote.name!r} is another backend's name")
        if remote.name and remote.url:
            found.append(remote)
    return tuple(found)


def _https_url(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"https://[A-Za-z0-9.:\[\]-]+(:\d+)?/?", value):
        raise ValueError("must be https://HOST[:PORT] (no path)")
    return value.rstrip("/")
