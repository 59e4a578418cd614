"""`f2b-bgp doctor`: check the whole chain on this host, one verdict per link, each with what to do.

config -> daemon and its backends -> store -> FRR (kernel backend) or ExaBGP's sessions -> fail2ban's
jails and sockets -> fail2ban queue -> guards. Every check is a small function returning Check values;
none changes anything.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from .aggregation import AggregationPolicy
from .client import Client
from .config import Config, load_config
from .defaults import API_SOCKET
from .errors import ConfigError, ExitCode, F2bBgpError

ACTIONS = ("bgp-blackhole", "bgp-blackhole.py")
TIMEOUT = 10.0


class Level(IntEnum):
    OK = 0
    WARN = 1
    FAIL = 2


EXIT_CODES = {Level.OK: ExitCode.OK, Level.WARN: ExitCode.WARN, Level.FAIL: ExitCode.FAIL}


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level.name.lower():4}  {self.name:10}  {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, str]:
        return {**asdict(self), "level": self.level.name.lower()}


@dataclass(frozen=True)
class Options:
    config: Path
    socket: str
    vtysh_dir: str | None = None
    fail2ban_socket: str | None = None


@dataclass
class Facts:
    """What the checks share: the config and the daemon's answers (None where unavailable)."""

    config: Config | None = None
    status: dict[str, Any] | None = None
    bans: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class Report:
    checks: tuple[Check, ...]

    @property
    def worst(self) -> Level:
        return max((c.level for c in self.checks), default=Level.OK)

    @property
    def exit_code(self) -> ExitCode:
        return EXIT_CODES[self.worst]

    def as_json(self) -> str:
        return json.dumps({"result": self.worst.name.lower(), "exit_code": int(self.exit_code),
                           "checks": [c.as_dict() for c in self.checks]}, indent=2)


def run(options: Options) -> Report:
    facts = Facts()
    checks = [check_config(options, facts), check_daemon(options, facts)]
    for step in STEPS:
        checks += step(options, facts)
    return Report(tuple(checks))


# --- config and daemon -------------------------------------------------------------------------------

def check_config(options: Options, facts: Facts) -> Check:
    try:
        facts.config = load_config(options.config)
    except ConfigError as err:
        return Check("config", Level.FAIL, err.message, f"f2b-bgp --config {options.config} check-config")
    return Check("config", Level.OK, f"{options.config} valid")


def check_daemon(options: Options, facts: Facts) -> Check:
    try:
        with Client(options.socket, timeout=TIMEOUT) as client:
            facts.status = client.call("status")
            facts.bans = client.call("list")["bans"]
    except F2bBgpError as err:
        return Check("daemon", Level.FAIL, err.message, "systemctl start f2b-bgp; journalctl -u f2b-bgp")
    status = facts.status
    routes = status["routes"]
    detail = f"f2b-bgp {status['version']} up {status['uptime']:.0f} s, {routes['active']} route(s) active, " \
             f"{routes['pending']} pending"
    not_ready = {name: b.get("last_error") or "not ready" for name, b in status["backends"].items() if not b.get("ready")}
    if not_ready:
        return Check("daemon", Level.FAIL, detail + "; backend " + "; ".join(f"{n}: {e}" for n, e in not_ready.items()),
                     "see the backend's line below and the daemon's log")
    unaccounted = sum(b.get("unaccounted", 0) for b in status["backends"].values())
    if unaccounted:
        return Check("daemon", Level.WARN, detail + f"; {unaccounted} route(s) of ours the store cannot account for",
                     "restart the daemon once with 'serve --adopt' (keep them) or 'serve --discard' (withdraw them)")
    if routes["pending"]:
        return Check("daemon", Level.WARN, detail, "the daemon retries; 'f2b-bgp list' shows each pending route's error")
    return Check("daemon", Level.OK, detail + f"; backends {', '.join(status['backends'])} ready")


# --- store -------------------------------------------------------------------------------------------

def check_store(options: Options, facts: Facts) -> list[Check]:
    """The daemon's own report when its status has one, else the database file as the daemon sees it."""
    reported = (facts.status or {}).get("store")
    if isinstance(reported, dict) and reported.get("writable") is False:
        return [Check("store", Level.FAIL, f"the daemon cannot write its store: {reported.get('error', '')}",
                      "free space or fix permissions of daemon.database's directory, then 'f2b-bgp sync'")]
    if facts.config is None:
        return []
    problem = store_problem(facts.config.daemon.database)
    if problem:
        return [Check("store", Level.FAIL, problem, f"make {facts.config.daemon.database.parent} writable by the "
                      "daemon's user (make install creates it)")]
    return [Check("store", Level.OK, f"{facts.config.daemon.database} writable")]


def store_problem(database: Path) -> str:
    """Why the daemon could not write its SQLite store there ("" if it can)."""
    for path in (database.parent, database):
        if not path.exists():
            return f"{path} missing" if path == database.parent else ""
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return f"{path} is on a read-only file system"
        if not path.stat().st_mode & 0o200:
            return f"{path} is not writable by its owner"
    return ""


# --- kernel backend through FRR -------------------------------------------------------------------------

def check_kernel(options: Options, facts: Facts) -> list[Check]:
    config = facts.config
    if config is None or not config.kernel.enabled:
        return []
    vtysh = Vtysh(options.vtysh_dir)
    if not vtysh.found:
        return [Check("frr", Level.WARN, "vtysh not found: nothing here announces the kernel routes",
                      "apt-get install frr; load frr-examples/injector/ (f2b-bgp peering frr-injector)")]
    try:
        running = vtysh.run("show running-config")
        checks = [redistribution(running), _sessions(vtysh)]
        if facts.bans is not None:
            checks.append(_routes_in_frr(vtysh, facts.bans))
    except ToolError as err:
        return [Check("frr", Level.FAIL, str(err), "systemctl status frr (zebra and bgpd must run)")]
    return checks


def last_line(text: str) -> str:
    """The last line of a tool's output, without fail2ban's "date time name [pid]: ERROR" prefix."""
    lines = text.strip().splitlines()
    return re.sub(r"^.*\]: +[A-Z]+ +", "", lines[-1]) if lines else "no output"


class ToolError(Exception):
    """vtysh or fail2ban-client failed or did not answer: one line saying which."""


class Vtysh:
    def __init__(self, vty_dir: str | None) -> None:
        self.argv = ["vtysh", *(["--vty_socket", vty_dir] if vty_dir else [])]
        self.found = shutil.which("vtysh") is not None

    def run(self, command: str) -> str:
        try:
            result = subprocess.run([*self.argv, "-c", command], capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ToolError(f"vtysh -c {command!r} did not answer in {TIMEOUT:g} s") from None
        if result.returncode != 0:
            raise ToolError(f"vtysh -c {command!r}: {last_line(result.stderr or result.stdout)}")
        return result.stdout

    def json(self, command: str) -> Any:
        return json.loads(self.run(command) or "{}")


def redistribution(running: str) -> Check:
    """`redistribute kernel` under both address families of router bgp."""
    found, family = set(), ""
    for line in running.splitlines():
        text = line.strip()
        if text.startswith("address-family "):
            family = text.split()[1]
        elif text.startswith("exit-address-family"):
            family = ""
        elif text.startswith("redistribute kernel"):
            found.add(family or "ipv4")
    missing = [f for f in ("ipv4", "ipv6") if f not in found]
    if missing:
        return Check("frr-redist", Level.FAIL, f"FRR does not redistribute kernel routes ({', '.join(missing)})",
                     "add 'redistribute kernel route-map F2B-KERNEL4/6' (f2b-bgp peering frr-injector)")
    return Check("frr-redist", Level.OK, "FRR redistributes kernel routes (ipv4, ipv6)")


def _sessions(vtysh: Vtysh) -> Check:
    summary = vtysh.json("show bgp summary json")
    peers: dict[str, str] = {}
    for family in summary.values():
        for address, peer in (family.get("peers") or {}).items() if isinstance(family, dict) else ():
            peers.setdefault(address, peer.get("state", "?"))
    if not peers:
        return Check("bgp", Level.FAIL, "FRR has no BGP neighbor", "configure the firewalls in FRR's router bgp")
    down = {a: s for a, s in peers.items() if s != "Established"}
    if down:
        return Check("bgp", Level.FAIL, "BGP session not established: " + ", ".join(f"{a} {s}" for a, s in sorted(down.items())),
                     "check the firewall's side and the link ('show bgp neighbors')")
    return Check("bgp", Level.OK, f"{len(peers)} BGP session(s) established: {', '.join(sorted(peers))}")


def _routes_in_frr(vtysh: Vtysh, bans: list[dict[str, Any]]) -> Check:
    active = {b["prefix"] for b in bans if b["state"] == "active"}
    kernel = set(vtysh.json("show ip route kernel json")) | set(vtysh.json("show ipv6 route kernel json"))
    bgp = set(vtysh.json("show bgp ipv4 unicast json").get("routes", {})) | \
        set(vtysh.json("show bgp ipv6 unicast json").get("routes", {}))
    unseen, unannounced = sorted(active - kernel), sorted((active & kernel) - bgp)
    if unseen:
        return Check("frr-routes", Level.FAIL, f"{len(unseen)} of {len(active)} active route(s) not in zebra "
                     f"(e.g. {unseen[0]})", "backends.kernel.table must be 254; 'f2b-bgp sync'")
    if unannounced:
        return Check("frr-routes", Level.FAIL, f"{len(unannounced)} of {len(active)} active route(s) not in BGP "
                     f"(e.g. {unannounced[0]})", "check the redistribute route-maps' prefix-lists")
    return Check("frr-routes", Level.OK, f"{len(active)} active route(s) in zebra and BGP")


# --- ExaBGP backend ---------------------------------------------------------------------------------------

def check_exabgp(options: Options, facts: Facts) -> list[Check]:
    if facts.config is None or not facts.config.exabgp.enabled or facts.status is None:
        return []
    state = facts.status["backends"].get("exabgp", {})
    if not state.get("bridge"):
        return [Check("exabgp", Level.FAIL, "ExaBGP's bridge is not connected",
                      "systemctl status f2b-bgp-exabgp; its exabgp.conf must run 'f2b-bgp exabgp-bridge'")]
    checks = [Check("exabgp", Level.OK, f"bridge connected (ExaBGP pid {state['bridge'].get('exabgp_pid')})")]
    peers = state.get("peers") or {}
    down = {a: p for a, p in peers.items() if p.get("state") != "up"}
    if not peers:
        checks.append(Check("bgp", Level.WARN, "ExaBGP reported no BGP session yet", "is bgp.peers in exabgp.conf?"))
    elif down:
        checks.append(Check("bgp", Level.FAIL, "BGP session down: " + ", ".join(
            f"{a} {p.get('state')}{' (' + p['reason'] + ')' if p.get('reason') else ''}" for a, p in sorted(down.items())),
            "check the firewall's side and the link"))
    else:
        checks.append(Check("bgp", Level.OK, f"{len(peers)} BGP session(s) up: {', '.join(sorted(peers))}"))
    return checks


# --- fail2ban ------------------------------------------------------------------------------------------------

def check_fail2ban(options: Options, facts: Facts) -> list[Check]:
    if shutil.which("fail2ban-client") is None:
        return [Check("fail2ban", Level.WARN, "fail2ban-client not found: no jail sends bans here",
                      "apt-get install fail2ban; make install puts the action in /etc/fail2ban")]
    client = Fail2ban(options.fail2ban_socket)
    try:
        jails = client.jails()
        actions = {jail: client.actions(jail) for jail in jails}
    except ToolError as err:
        return [Check("fail2ban", Level.FAIL, str(err), "systemctl start fail2ban")]
    if not jails:
        return [Check("fail2ban", Level.FAIL, "fail2ban runs no jail", "enable one in /etc/fail2ban/jail.d/")]
    others = sorted(j for j, names in actions.items() if not set(names) & set(ACTIONS))
    checks = []
    if others:
        checks.append(Check("jails", Level.FAIL, f"jail(s) not on a bgp-blackhole action: {', '.join(others)}",
                            "banaction = bgp-blackhole in their jail.d file, then fail2ban-client reload"))
    ours = {j: next(a for a in names if a in ACTIONS) for j, names in actions.items() if j not in others}
    if ours:
        checks.append(Check("jails", Level.OK, f"on bgp-blackhole: {', '.join(sorted(ours))}"))
    queue = ((facts.status or {}).get("queue") or {}).get("path")
    checks += [_action_handoff(client, jail, action, queue) for jail, action in sorted(ours.items())]
    return checks


class Fail2ban:
    def __init__(self, socket: str | None) -> None:
        self.argv = ["fail2ban-client", *(["-s", socket] if socket else [])]

    def run(self, *args: str) -> str:
        try:
            result = subprocess.run([*self.argv, *args], capture_output=True, text=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ToolError(f"fail2ban-client {' '.join(args)} did not answer in {TIMEOUT:g} s") from None
        if result.returncode != 0:
            raise ToolError(f"fail2ban-server not reachable: {last_line(result.stderr or result.stdout)}")
        return result.stdout

    def jails(self) -> list[str]:
        for line in self.run("status").splitlines():
            if "Jail list:" in line:
                return [j.strip() for j in line.split(":", 1)[1].split(",") if j.strip()]
        return []

    def actions(self, jail: str) -> list[str]:
        return [line.strip() for line in self.run("get", jail, "actions").splitlines()[1:] if line.strip()]


def _action_handoff(client: Fail2ban, jail: str, action: str, daemon_queue: str | None) -> Check:
    """Does the jail's action reach the daemon: the .conf action through the queue the daemon reads,
    the .py action through the daemon's socket (and the same queue while the daemon is away)?"""
    if action.endswith(".py"):
        try:
            socket = client.run("get", jail, "action", action, "socket").strip() or API_SOCKET
        except ToolError:
            socket = os.environ.get("F2B_BGP_SOCKET", API_SOCKET)  # the .py action's default
        try:
            with Client(socket, timeout=TIMEOUT) as daemon:
                daemon.call("ping")
        except F2bBgpError as err:
            return Check("f2b-sock", Level.FAIL, f"jail {jail}: {err.message}",
                         f"start the daemon, or set the action's socket to daemon.socket ({action}.local)")
        return Check("f2b-sock", Level.OK, f"jail {jail} reaches the daemon at {socket}")
    try:
        queue = client.run("get", jail, "action", action, "queue").strip()
    except ToolError as err:
        return Check("f2b-queue", Level.WARN, f"jail {jail}: cannot read its action's queue option: {err}")
    if daemon_queue is not None and queue != daemon_queue:
        return Check("f2b-queue", Level.FAIL, f"jail {jail} queues to {queue}, the daemon reads {daemon_queue}",
                     f"set queue = {daemon_queue} in action.d/{action}.local, then fail2ban-client reload --restart {jail}")
    if not os.access(Path(queue).parent, os.W_OK):
        return Check("f2b-queue", Level.FAIL, f"jail {jail}: the queue's directory {Path(queue).parent} is not writable",
                     "create the daemon's state directory (make install does), or fix its owner")
    return Check("f2b-queue", Level.OK, f"jail {jail} queues to {queue}")


# --- queue and guards --------------------------------------------------------------------------------------------

def check_queue(options: Options, facts: Facts) -> list[Check]:
    """fail2ban requests spooled while the daemon was away (status `queue`, when the daemon reports one)."""
    queue = (facts.status or {}).get("queue")
    if queue is None:
        return []
    depth = queue if isinstance(queue, int) else queue.get("depth", sum(v for v in queue.values() if isinstance(v, int)))
    if depth:
        return [Check("queue", Level.WARN, f"{depth} fail2ban request(s) queued, not yet applied",
                      "the daemon drains the queue; if it stays, see its log")]
    return [Check("queue", Level.OK, "fail2ban queue empty")]


def check_guards(options: Options, facts: Facts) -> list[Check]:
    if facts.config is None:
        return []
    g = facts.config.guards
    kinds = Counter(p.kind for p in g.protected)
    own = kinds["protected"]
    parts = ["never blackholed: " + ", ".join(f"{n} {kind}" for kind, n in kinds.items()),
             "the host's addresses" if g.protect_host_addresses else "NOT the host's addresses",
             "host routes only" if (g.min_length_ipv4, g.min_length_ipv6) == (32, 128) else
             f"prefixes from /{g.min_length_ipv4} and /{g.min_length_ipv6}",
             *_aggregation(facts.config.aggregation),
             "special-purpose ranges refused" + (f" but {', '.join(map(str, g.allow_special))}" if g.allow_special else ""),
             f"max_routes {g.max_routes}", f"max_rate {g.max_rate}/min"]
    if not own or not g.protect_host_addresses:
        return [Check("guards", Level.WARN, "; ".join(parts), "list your own networks in guards.protected "
                      "and keep guards.protect_host_addresses = true")]
    return [Check("guards", Level.OK, "; ".join(parts))]


def _aggregation(agg: AggregationPolicy) -> list[str]:
    found = []
    if agg.ipv6_ban_length < 128 or agg.jails:
        jails = "".join(f", {jail} /{length}" for jail, length in sorted(agg.jails.items()))
        found.append(f"IPv6 bans widened to /{agg.ipv6_ban_length}{jails}")
    esc = agg.escalation
    if esc.enabled:
        found.append(f"{esc.threshold} bans in {esc.window:g} s escalate to /{esc.ipv4_length}, /{esc.ipv6_length}")
    return found


STEPS: Sequence[Callable[[Options, Facts], list[Check]]] = (check_store, check_kernel, check_exabgp, check_fail2ban,
                                                           check_queue, check_guards)
