"""Ban storms under fire: N IPv6 bans through ExaBGP to an FRR firewall while one part of the chain fails.

StormLab: the docs/contracts.md topology; on the firewall FRR from frr-examples/firewall, on the injector
f2b-bgp with the ExaBGP backend alone and ExaBGP from the shipped exabgp/ files (as test_exabgp.py).
storm(lab, n, fault, run): bans pipelined on one connection; at the half-way answer FAULTS[fault] strikes;
unanswered bans are sent again once the daemon answers (as a client that retries would); then the
firewall's RIB is compared with the store. Used by tests/live/test_faults.py and bench/faults.py.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from f2b_bgp.peering.regenerate import reference_config

from .exabgp import Exabgp, with_bridge_program
from .f2bbgp import F2bBgp, exabgp_tables, lab_config
from .faults import Tally, log_since, log_size, pipelined, stored
from .frr import Frr
from .impostor import Knock, knock
from .netns import HOSTS, Topology
from .process import make_workdir, remove_workdir
from .wait import wait_until

REPO = Path(__file__).parents[2]
INJECTOR = HOSTS["injector"]["4"]
MAX_ROUTES = 10_000  # the shipped firewall's maximum-prefix per family
CONVERGE_TIMEOUT = 180

CONFIG = lab_config(retry_interval=1, guards=f"max_routes = {MAX_ROUTES}\nmax_rate = 10000000",
                    rest=exabgp_tables(kernel=False, bgp=f"prefix_limit = {MAX_ROUTES}", exabgp="ack_timeout = 3"))


class StormLab:
    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.stack = ExitStack()

    def __enter__(self) -> StormLab:
        try:
            workdir = make_workdir("storm")
            self.stack.callback(remove_workdir, workdir)
            shipped = REPO / "frr-examples" / "firewall"
            self.firewall = self.stack.enter_context(
                Frr(self.topology.ns("firewall"), {d: shipped / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")}))
            self.daemon = self.stack.enter_context(F2bBgp(self.topology.ns("injector"), CONFIG,
                                                          serve_args=("--discard",)))
            conf = with_bridge_program(REPO / "exabgp" / "exabgp.conf", workdir,
                                       str(reference_config().exabgp.bridge_program))
            env = {"exabgp_daemon_user": "root", "exabgp_log_destination": "stdout",
                   "F2B_BGP_BRIDGE_SOCKET": str(self.daemon.workdir / "exabgp.sock")}
            self.exabgp = self.stack.enter_context(Exabgp(self.topology.ns("injector"), conf, listen=INJECTOR,
                                                          workdir=workdir, env=env,
                                                          env_file=REPO / "exabgp" / "exabgp.env"))
            self.wait_up()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stack.close()

    def wait_up(self) -> None:
        wait_until(lambda: self.bridge() and self.established(), 60, "bridge connected and session established")

    def bridge(self) -> dict[str, Any] | None:
        return self.daemon.call("status")["backends"]["exabgp"]["bridge"]

    def established(self) -> bool:
        state = self.firewall.vtysh_json(f"show bgp neighbors {INJECTOR} json")
        return state.get(INJECTOR, {}).get("bgpState") == "Established"

    def rib_count(self) -> int:
        peers = self.firewall.vtysh_json("show bgp ipv6 unicast summary json").get("peers", {})
        return int(peers.get(INJECTOR, {}).get("pfxRcd", 0))

    def rib(self) -> dict[str, int]:
        """The firewall's IPv6 BGP table: prefix -> number of paths."""
        routes = self.firewall.vtysh_json("show bgp ipv6 unicast json").get("routes", {})
        return {prefix: len(paths.get("paths", []) if isinstance(paths, dict) else paths)
                for prefix, paths in routes.items()}

    def stored(self) -> set[str]:
        return stored(self.daemon)

    def converge(self, what: str) -> float:
        """Wait until the firewall's RIB holds exactly the stored bans; the seconds it took."""
        started = time.monotonic()

        def converged() -> bool:
            store = self.stored()
            return self.rib_count() == len(store) and set(self.rib()) == store

        wait_until(converged, CONVERGE_TIMEOUT, f"{what}: the firewall's RIB == the store")
        return time.monotonic() - started

    def tally(self, scenario: str, acknowledged: set[str], took: float, notes: str = "") -> Tally:
        rib, store = self.rib(), self.stored()
        return Tally(scenario, len(acknowledged), len(acknowledged - set(rib)), len(set(rib) - store),
                     sum(paths - 1 for paths in rib.values()), took, notes)

    def clean(self) -> None:
        """No ban, nothing on the firewall: the state every storm starts from."""
        self.daemon.call("flush")
        wait_until(lambda: self.rib_count() == 0, CONVERGE_TIMEOUT, "the firewall's RIB empty after a flush")


# --- the faults: each strikes mid-storm and returns when the failed part is back ----------------------

def kill_daemon(lab: StormLab) -> None:
    lab.daemon.kill(signal.SIGKILL)  # the storm's connection breaks; storm() starts it again


def kill_exabgp(lab: StormLab) -> None:
    lab.exabgp.processes[-1].kill(signal.SIGKILL)
    lab.exabgp.restart()


def kill_bgpd(lab: StormLab) -> None:
    lab.firewall.kill_daemon("bgpd")


def session_flap(lab: StormLab) -> None:
    lab.firewall.vtysh(f"clear bgp {INJECTOR}")


FAULTS: dict[str, Callable[[StormLab], None]] = {
    "kill -9 daemon": kill_daemon, "kill -9 ExaBGP": kill_exabgp, "kill -9 firewall bgpd": kill_bgpd,
    "session flap": session_flap,
}


def storm(lab: StormLab, n: int, fault: str, run: int = 0) -> Tally:
    """N bans (N <= MAX_ROUTES) with FAULTS[fault] at the half-way answer; the RIB against the store after."""
    lab.clean()
    addresses = [f"2001:db8:203:{0x100 + run:x}::{i:x}" for i in range(1, n + 1)]
    requests = [{"op": "ban", "prefix": a, "jail": "storm"} for a in addresses]
    struck: list[threading.Thread] = []
    ended: list[float] = []

    def fail() -> None:
        FAULTS[fault](lab)
        ended.append(time.monotonic())

    def strike(count: int) -> None:
        if count != n // 2 or ended or struck:
            return
        if fault == "kill -9 daemon":
            fail()  # here and now: the answers stop with it
        else:
            struck.append(threading.Thread(target=fail))
            struck[-1].start()

    answers = pipelined(lab.daemon.socket, requests, on_answer=strike)
    for thread in struck:
        thread.join(120)
    if len(answers) < n:  # the daemon died under the storm: start it, send the rest again
        lab.daemon.start()
        ended[-1] = time.monotonic()
        answers += pipelined(lab.daemon.socket, requests[len(answers):])
    acknowledged = {a["prefix"] for a in answers if a.get("ok")}
    refused = [a for a in answers if not a.get("ok")]
    assert not refused, f"{fault}: {len(refused)} bans refused, e.g. {refused[:3]}"
    lab.converge(fault)
    tally = lab.tally(fault, acknowledged, time.monotonic() - ended[-1])
    lab.clean()
    return tally


# --- impersonating the bridge ------------------------------------------------------------------------

NOBODY = 65534


@dataclass
class Impostors:
    tally: Tally
    no_right: Knock  # another uid, no right to open the socket
    wrong_uid: Knock  # another uid allowed to open any file: only the peer credentials stop it
    second: Knock  # ExaBGP's own uid while the real bridge is connected
    refusals: list[str]  # the daemon's log lines about them
    bridge_before: int
    bridge_after: int


def impostors(lab: StormLab, bans: int) -> Impostors:
    """Three impostors knock on the bridge socket; then BANS bans must still reach the firewall."""
    lab.clean()
    before, mark = lab.bridge()["pid"], log_size(lab.daemon)
    sock = lab.daemon.workdir / "exabgp.sock"
    knocks = knock(sock, NOBODY), knock(sock, NOBODY, override=True), knock(sock)
    started = time.monotonic()
    answers = pipelined(lab.daemon.socket, [{"op": "ban", "prefix": f"2001:db8:203:f::{i:x}", "jail": "storm"}
                                            for i in range(1, bans + 1)])
    acknowledged = {a["prefix"] for a in answers if a.get("ok") and a["state"] == "active"}
    lab.converge("bans after the impostors")
    tally = lab.tally("bridge impersonation", acknowledged, time.monotonic() - started,
                      f"{len(answers) - len(acknowledged)} bans not active")
    refusals = [line for line in log_since(lab.daemon, mark) if "exabgp-bridge-refused" in line]
    after = lab.bridge()["pid"]
    lab.clean()
    return Impostors(tally, *knocks, refusals, before, after)


# --- an emptied store while ExaBGP holds the routes ------------------------------------------------

@dataclass
class EmptyStore:
    tally: Tally  # after --adopt: the firewall against the acknowledged bans and the store
    held: int  # routes on the firewall before the store was emptied
    kept: list[tuple[str, int, int]]  # per start: (serve args, routes counted unaccounted, routes on the firewall)
    adopted: int  # bans listed after --adopt
    after_discard: int  # routes on the firewall after --discard


def empty_store(lab: StormLab, bans: int) -> EmptyStore:
    """BANS routes announced; state.db truncated; started plainly twice, then with --adopt; emptied again,
    started with --discard. ExaBGP cannot tell what it holds before its bridge connects, after the start."""
    lab.clean()
    answers = pipelined(lab.daemon.socket, [{"op": "ban", "prefix": f"2001:db8:203:6::{i:x}", "jail": "storm"}
                                            for i in range(1, bans + 1)])
    acknowledged = {a["prefix"] for a in answers if a.get("ok")}
    lab.converge("bans before the store is emptied")
    held, kept = lab.rib_count(), []
    saved = lab.daemon.serve_args

    def start(*args: str, empty: bool = False) -> None:
        lab.daemon.stop()
        if empty:
            for name in ("state.db", "state.db-wal", "state.db-shm"):
                (lab.daemon.workdir / name).unlink(missing_ok=True)
            (lab.daemon.workdir / "state.db").write_bytes(b"")
        lab.daemon.serve_args = args
        lab.daemon.start()
        wait_until(lambda: lab.daemon.call("status")["backends"]["exabgp"]["counters"]["lines"] > 0, 60,
                   "the bridge connected and the daemon asked ExaBGP what it holds")

    try:
        for args, empty in (((), True), ((), False)):
            start(*args, empty=empty)
            unaccounted = wait_until(lambda: lab.daemon.call("status")["backends"]["exabgp"]["unaccounted"], 30,
                                     "routes counted unaccounted")
            kept.append((" ".join(args) or "serve", unaccounted, lab.rib_count()))
        started = time.monotonic()
        start("--adopt")
        adopted = wait_until(lambda: len(lab.stored()), 60, "adopted bans listed")
        lab.converge("adopted bans")
        tally = lab.tally("empty store, ExaBGP", acknowledged, time.monotonic() - started,
                          f"kept at two plain starts: {kept[0][1]}, {kept[1][1]}; then --adopt")
        start("--discard", empty=True)
        wait_until(lambda: lab.rib_count() == 0, 60, "discarded routes gone from the firewall")
        return EmptyStore(tally, held, kept, adopted, lab.rib_count())
    finally:
        lab.daemon.serve_args = saved
