"""Fault scenarios, run alike by tests/live/test_faults.py (small sizes, asserted) and bench/faults.py
(full size, printed): each returns what it measured, a Tally among it.

Storage and client faults use the kernel backend on the injector (the kernel's routes of our protocol
are what the store must match); the storm scenarios (storm.py) use ExaBGP and an FRR firewall.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from f2b_bgp.client import Client
from f2b_bgp.errors import F2bBgpError

from . import mounts
from .f2bbgp import F2bBgp, lab_config
from .netns import Topology
from .process import make_workdir, remove_workdir
from .wait import wait_until

PROTOCOL = "201"  # the kernel backend's route protocol number (the reference config's)


@dataclass(frozen=True)
class Tally:
    """One scenario's outcome. acknowledged: bans the client got `ok` for; lost: acknowledged and absent
    where the routes should be; stale: there and not in the store; duplicated: held more than once."""

    scenario: str
    acknowledged: int
    lost: int
    stale: int
    duplicated: int
    converge_s: float  # from the end of the fault until routes == store again
    notes: str = ""


def kernel_config(max_routes: int, database: str = "{workdir}/state.db") -> str:
    """The lab's daemon config with the kernel backend only, room for MAX_ROUTES bans, the database at DATABASE."""
    config = lab_config(guards=f"max_routes = {max_routes}\nmax_rate = {max_routes}",
                        rest=f"[bgp]\nprefix_limit = {max(max_routes, 10000)}")
    return config.replace('database = "{workdir}/state.db"', f'database = "{database}"')


def our_routes(topology: Topology, node: str = "injector") -> list[str]:
    """Routes of our protocol in the node's main table, one entry per route (duplicates kept)."""
    found = []
    for family in ("-4", "-6"):
        for route in topology.ip_json(node, [family, "route", "show", "proto", PROTOCOL]):
            found.append(_canonical(route["dst"], family))
    return found


def _canonical(dst: str, family: str) -> str:
    return dst if "/" in dst else dst + ("/32" if family == "-4" else "/128")


def bans(daemon: F2bBgp) -> list[dict[str, Any]]:
    """Every ban the daemon lists, page after page."""
    found, after = [], ""
    while True:
        page = daemon.call("list", after=after or None, limit=2000)
        found += page["bans"]
        if not page["next"]:
            return found
        after = page["next"]


def stored(daemon: F2bBgp) -> set[str]:
    return {b["prefix"] for b in bans(daemon)}


def compare(routes: list[str], store: set[str], acknowledged: set[str]) -> tuple[int, int, int]:
    """(lost, stale, duplicated) of routes against the store and what the clients were told."""
    held = set(routes)
    return len(acknowledged - held), len(held - store), len(routes) - len(held)


def answer(client: Client, op: str, **fields: Any) -> dict[str, Any]:
    """The daemon's answer, an error as {"ok": False, "code": ..., "error": ...}."""
    try:
        return client.call(op, **fields)
    except F2bBgpError as err:
        return {"ok": False, "code": err.code, "error": err.message}


def log_size(daemon: F2bBgp) -> int:
    return (daemon.workdir / "daemon.log").stat().st_size


def log_since(daemon: F2bBgp, mark: int) -> list[str]:
    with open(daemon.workdir / "daemon.log", "rb") as log:
        log.seek(mark)
        return log.read().decode(errors="replace").splitlines()


# --- disk full ------------------------------------------------------------------------------------

@dataclass
class DiskFull:
    tally: Tally
    answers: dict[str, int] = field(default_factory=dict)  # code -> count, for the bans sent while full
    errors: set[str] = field(default_factory=set)  # the error texts of the refused ones
    status_while_full: dict[str, Any] = field(default_factory=dict)
    reads_while_full: bool = False
    log_lines_while_full: int = 0
    expiry_retries_while_full: int = 0
    full_for_s: float = 0.0


def disk_full(topology: Topology, before: int, during: int, expiring: int, full_for: float) -> DiskFull:
    """BEFORE bans, EXPIRING bans that fall due while the disk is full, then DURING bans on a full disk;
    FULL_FOR seconds later space returns. Tally: routes against the store after it healed."""
    with ExitStack() as stack:
        workdir = make_workdir("diskfull")
        stack.callback(remove_workdir, workdir)
        (workdir / "db").mkdir()
        config = kernel_config(before + during + expiring + 10, database="{workdir}/db/state.db")
        daemon = stack.enter_context(F2bBgp(topology.ns("injector"), config, workdir=workdir,
                                            serve_args=("--discard",), wrap=mounts.tmpfs(workdir / "db", "16m")))
        client = stack.enter_context(Client(str(daemon.socket)))
        acknowledged = set()
        for i in range(before):
            acknowledged.add(answer(client, "ban", prefix=f"2001:db8:203:a::{i:x}", jail="full")["prefix"])
        for i in range(expiring):
            answer(client, "ban", prefix=f"2001:db8:203:b::{i:x}", jail="full", bantime=3)
        mounts.fill(daemon.pid, workdir / "db")
        filled, mark = time.monotonic(), log_size(daemon)
        result = DiskFull(Tally("disk full", 0, 0, 0, 0, 0.0))
        for i in range(during):
            got = answer(client, "ban", prefix=f"2001:db8:203:c::{i:x}", jail="full")
            code = "ok" if got["ok"] else got["code"]
            result.answers[code] = result.answers.get(code, 0) + 1
            if got["ok"]:
                acknowledged.add(got["prefix"])
            else:
                result.errors.add(got["error"])
        routes, store = our_routes(topology), stored(daemon)
        ghosts = set(routes) - store
        assert not ghosts, f"routes with no claim while the disk is full: {sorted(ghosts)[:5]}"
        result.status_while_full = answer(client, "status")["store"]
        result.reads_while_full = all(answer(client, op, **f)["ok"] for op, f in
                                      [("list", {}), ("show", {"prefix": "2001:db8:203:a::"}), ("status", {})])
        time.sleep(max(0.0, full_for - (time.monotonic() - filled)))  # the fault lasts this long: not a sync
        result.log_lines_while_full = len(log_since(daemon, mark))
        result.expiry_retries_while_full = sum("expiry-deferred" in line for line in log_since(daemon, mark))
        result.full_for_s = time.monotonic() - filled
        mounts.free(daemon.pid, workdir / "db")
        freed = time.monotonic()
        wait_until(lambda: answer(client, "status")["store"]["writable"], 120, "the store healed by itself")
        wait_until(lambda: not any("2001:db8:203:b::" in p for p in stored(daemon)), 60, "expired bans gone")
        wait_until(lambda: set(our_routes(topology)) == stored(daemon), 30, "kernel routes == store")
        converged = time.monotonic() - freed
        routes, store = our_routes(topology), stored(daemon)
        lost, stale, dup = compare(routes, store, acknowledged)
        result.tally = Tally("disk full", len(acknowledged), lost, stale, dup, converged,
                             f"{result.answers.get('store', 0)} of {during} bans refused with exit 8 while full")
        daemon.call("flush")
        return result


# --- read-only store ------------------------------------------------------------------------------

@dataclass
class ReadOnly:
    tally: Tally
    exit_code: int | None  # of the start with the directory mounted read-only
    message: list[str]  # what that start said
    user_exit_code: int | None  # of the start as a user that may not write the files (as the systemd unit runs it)
    user_message: list[str]


# the daemon as nobody, with what it needs to run this checkout's Python (under /root) and write routes
NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
          "--inh-caps=-all,+dac_read_search,+net_admin", "--ambient-caps=+dac_read_search,+net_admin")


def read_only(topology: Topology, bans: int) -> ReadOnly:
    """BANS in place, the daemon stopped; started again with its database directory mounted read-only,
    then as a user who may not write it."""
    with ExitStack() as stack:
        workdir = make_workdir("readonly")
        stack.callback(remove_workdir, workdir)
        (workdir / "db").mkdir()
        config = kernel_config(bans + 10, database="{workdir}/db/state.db")
        daemon = stack.enter_context(F2bBgp(topology.ns("injector"), config, workdir=workdir, serve_args=("--discard",)))
        acknowledged = {p for p in ban_many(daemon, [f"2001:db8:203:d::{i:x}" for i in range(bans)], "ro")}
        daemon.stop()
        daemon.wrap, daemon.serve_args = mounts.read_only(workdir / "db"), ()
        refused, message = _refused_start(daemon)
        daemon.wrap = NOBODY
        user_refused, user_message = _refused_start(daemon)
        routes = our_routes(topology)
        lost, stale, dup = compare(routes, acknowledged, acknowledged)
        daemon.wrap = ()
        started = time.monotonic()
        daemon.start()  # writable again: starts, and finds everything in place
        wait_until(lambda: set(our_routes(topology)) == stored(daemon), 30, "kernel routes == store")
        tally = Tally("read-only store", len(acknowledged), lost, stale, dup, time.monotonic() - started,
                      f"start refused with exit {refused} (read-only mount), {user_refused} (owner)")
        daemon.call("flush")
        return ReadOnly(tally, refused, message, user_refused, user_message)


def _refused_start(daemon: F2bBgp) -> tuple[int | None, list[str]]:
    """Start a daemon that should refuse: its exit code and what it said."""
    mark = log_size(daemon)
    try:
        daemon.start()
    except AssertionError:
        pass
    return daemon.returncode, log_since(daemon, mark)


def ban_many(daemon: F2bBgp, addresses: list[str], jail: str) -> list[str]:
    """Pipelined bans on one connection; the prefixes acknowledged."""
    answers = pipelined(daemon.socket, [{"op": "ban", "prefix": a, "jail": jail} for a in addresses])
    bad = [a for a in answers if not a.get("ok")]
    assert not bad, bad[:3]
    return [a["prefix"] for a in answers]


def pipelined(path: Path, requests: list[dict[str, Any]], on_answer: Callable[[int], None] | None = None,
              timeout: float = 300) -> list[dict[str, Any]]:
    """Send every request on one connection without waiting; read the answers (in order) meanwhile.
    Returns the answers received: fewer than the requests if the daemon went away."""
    answers: list[dict[str, Any]] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        payload = b"".join(json.dumps(r).encode() + b"\n" for r in requests)
        writer = threading.Thread(target=_send_all, args=(conn, payload), daemon=True)
        writer.start()
        reader = conn.makefile("rb")
        for _ in requests:
            try:
                line = reader.readline()
            except OSError:
                break
            if not line:
                break
            answers.append(json.loads(line))
            if on_answer is not None:
                on_answer(len(answers))
        writer.join(30)
    return answers


def _send_all(conn: socket.socket, payload: bytes) -> None:
    try:
        conn.sendall(payload)
    except OSError:
        pass  # the daemon went away: the reader sees it too


# --- an emptied store -------------------------------------------------------------------------------

@dataclass
class EmptyStore:
    tally: Tally  # after --adopt: routes against the store
    exit_code: int | None  # of the refused start
    message: list[str]
    routes_after_refusal: int
    adopted: set[str]  # owners of the bans after --adopt
    routes_after_discard: int
    adopt_s: float  # how long the start with --adopt took
    discard_s: float


def empty_store(topology: Topology, routes: int) -> EmptyStore:
    """ROUTES bans in place, state.db truncated to 0 bytes: the start is refused; --adopt keeps them;
    truncated again, --discard removes them."""
    with F2bBgp(topology.ns("injector"), kernel_config(routes + 10), serve_args=("--discard",)) as daemon:
        acknowledged = set(ban_many(daemon, [f"2001:db8:203:7::{i:x}" for i in range(routes)], "before"))

        def emptied(*serve_args: str) -> float:
            daemon.stop()
            (daemon.workdir / "state.db").write_bytes(b"")
            for suffix in ("-wal", "-shm"):
                (daemon.workdir / f"state.db{suffix}").unlink(missing_ok=True)
            daemon.serve_args = serve_args
            started = time.monotonic()
            try:
                daemon.start()
            except AssertionError:
                pass
            return time.monotonic() - started

        mark = log_size(daemon)
        emptied()
        refused, message = daemon.returncode, log_since(daemon, mark)
        after_refusal = our_routes(topology)
        adopt_s = emptied("--adopt")
        wait_until(lambda: set(our_routes(topology)) == stored(daemon), 30, "kernel routes == adopted store")
        lost, stale, dup = compare(our_routes(topology), stored(daemon), acknowledged)
        owners = {o["jail"] for b in bans(daemon) for o in b["owners"]}
        tally = Tally("empty store", len(acknowledged), lost, stale, dup, adopt_s,
                      f"start refused with exit {refused}, {len(after_refusal)} routes kept; --adopt")
        discard_s = emptied("--discard")
        left = len(our_routes(topology))
        return EmptyStore(tally, refused, message, len(after_refusal), owners, left, adopt_s, discard_s)
