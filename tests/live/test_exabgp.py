"""Issue 5 live scenario: the f2b-bgp daemon announces through ExaBGP, started from the shipped exabgp/ files.

Injector: f2b-bgp (ExaBGP and kernel backends together) + ExaBGP running `f2b-bgp exabgp-bridge`, loaded from
exabgp/exabgp.conf and exabgp/exabgp.env byte for byte but for the documented placeholder
backends.exabgp.bridge_program (a wrapper running this checkout); the environment overrides only
what a test must (user root, log to stdout, the bridge socket in the daemon's work dir).
Receivers on the firewall: FRR, BIRD and OpenBGPD from their shipped snippets, GoBGP from the
lab's config (RIB only, as OpenBGPD on Linux).

| step | action | expected on every receiver |
|---|---|---|
| 010 | start | session Established; `status` shows the peer up |
| 020 | ban the attacker (IPv4, IPv6) | route with 65535:666; FRR/BIRD: kernel blackhole, probe dropped; the injector's kernel backend has it too |
| 030 | withdraw | route gone, traffic flows |
| 040 | kill -9 ExaBGP: ban gets exit code 6 (pending), the kernel backend stays active; start ExaBGP | every active route back, no new ban |
| 050 | reset the BGP session from the receiver | routes back (ExaBGP's adj-rib-out) |
| 060 | kill -9 the daemon, start it | routes stay; replay finds them in place |
| 070 | ban with a 2 s ban time | route appears, then goes by itself |
| 080 | SIGSTOP ExaBGP: the ban times out (exit code 6, pending); SIGCONT | the replay makes it active, nothing stray |
| 085 | add a community to the config, SIGHUP; remove it, restart the daemon | the route carries it, then loses it |
| 900 | 10,000 IPv6 bans over one API connection | all 10,000 on the receiver; flush: none |
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode
from f2b_bgp.peering.regenerate import reference_config
from tests.lab.asserts import assert_established, assert_no_route, assert_route
from tests.lab.bird import Bird
from tests.lab.exabgp import Exabgp, with_bridge_program
from tests.lab.f2bbgp import F2bBgp, exabgp_tables, lab_config
from tests.lab.frr import Frr
from tests.lab.gobgp import Gobgp
from tests.lab.netns import HOSTS, Topology, host_prefix
from tests.lab.openbgpd import OpenBgpd
from tests.lab.peers import Peer, kernel_routes, peer_for
from tests.lab.probe import ServerListener, probe
from tests.lab.process import make_workdir, remove_workdir
from tests.lab.wait import wait_until
from tests.live.test_lab import GOBGP_CONF, write
from tests.live.test_peering import OPENBGPD_LINUX, SHIPPED

REPO = Path(__file__).parents[2]
EXABGP_DIR = REPO / "exabgp"
FAMILIES = ("4", "6")
FIREWALL, INJECTOR = HOSTS["firewall"]["4"], HOSTS["injector"]["4"]
BLACKHOLE = "65535:666"
ATTACKER = {f: host_prefix(HOSTS["attacker"][f]) for f in FAMILIES}
SPARE = {"4": "203.0.113.201", "6": "2001:db8:203::201"}
SETTLE = 30
STORM = 10_000
ACK_TIMEOUT = 3

DAEMON_CONFIG = lab_config(retry_interval=1, guards="max_routes = 20000\nmax_rate = 20000",
                           rest=exabgp_tables(kernel=True, bgp="prefix_limit = 20000",
                                              exabgp=f"batch_size = 200\nack_timeout = {ACK_TIMEOUT}"))

# --- receivers ----------------------------------------------------------------------------------

def start_receiver(stack: ExitStack, name: str, topo: Topology, workdir: Path) -> Frr | Bird | OpenBgpd | Gobgp:
    ns = topo.ns("firewall")
    if name == "frr":
        return stack.enter_context(Frr(ns, {d: SHIPPED["frr"] / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")}))
    if name == "bird":
        return stack.enter_context(Bird(ns, SHIPPED["bird"] / "bird.conf"))
    if name == "openbgpd":
        return stack.enter_context(OpenBgpd(ns, SHIPPED["openbgpd"] / "bgpd.conf", extra_args=OPENBGPD_LINUX))
    return stack.enter_context(Gobgp(ns, write(workdir, "gobgpd.toml", GOBGP_CONF)))


def reset_session(daemon: Frr | Bird | OpenBgpd | Gobgp) -> None:
    """A hard reset of the injector's session, from the receiver's side."""
    if isinstance(daemon, Frr):
        daemon.vtysh(f"clear bgp {INJECTOR}")
    elif isinstance(daemon, Bird):
        daemon.birdc("restart f2b_injector")
    elif isinstance(daemon, OpenBgpd):
        daemon.bgpctl("neighbor", INJECTOR, "clear", json_output=False)
    else:  # gobgpd 3.10 stays Idle for over 30 s after `neighbor reset`, even with idle-hold-time-after-reset = 1
        daemon.gobgp("neighbor", INJECTOR, "disable", json_output=False)
        daemon.gobgp("neighbor", INJECTOR, "enable", json_output=False)


def ipv6_count(daemon: Frr | Bird | OpenBgpd | Gobgp) -> int:
    """IPv6 routes accepted from the injector, read cheaply enough to poll at 10,000."""
    if isinstance(daemon, Frr):
        peers = daemon.vtysh_json("show bgp ipv6 unicast summary json").get("peers", {})
        return int(peers.get(INJECTOR, {}).get("pfxRcd", 0))
    if isinstance(daemon, Bird):
        text = daemon.birdc("show route count table master6 protocol f2b_injector")
        return int(text.split(" of ")[0].split()[-1]) if " of " in text else 0
    if isinstance(daemon, OpenBgpd):
        rib = daemon.bgpctl("show", "rib", "inet6", timeout=60).get("rib", [])
        return len(rib)
    return len(daemon.gobgp("global", "rib", "-a", "ipv6", timeout=30) or {})


# --- the lab --------------------------------------------------------------------------------------

class Lab:
    def __init__(self, name: str, topo: Topology, receiver: Frr | Bird | OpenBgpd | Gobgp, daemon: F2bBgp,
                 exabgp: Exabgp) -> None:
        self.name, self.topo, self.receiver, self.daemon, self.exabgp = name, topo, receiver, daemon, exabgp
        self.peer: Peer = peer_for(receiver)
        self.installs = name in ("frr", "bird")  # the others keep a RIB only

    def ban(self, address: str, *args: str) -> None:
        result = self.daemon.cli("ban", *args, address)
        assert result.returncode == ExitCode.OK, f"ban {address}: rc {result.returncode} {result.stderr}"

    def status(self) -> dict:
        return self.daemon.call("status")["backends"]["exabgp"]

    def peer_state(self) -> tuple[str, float]:
        peer = self.status()["peers"].get(FIREWALL, {})
        return peer.get("state", ""), peer.get("since", 0.0)

    def bans(self) -> dict[str, dict]:
        return {b["prefix"]: b for b in self.daemon.call("list")["bans"]}

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = SETTLE) -> None:
        try:
            wait_until(predicate, timeout, what)
        except AssertionError as err:
            raise AssertionError(f"{self.name}: {err}\nstatus: {self.status()}\n{self.exabgp.log_tail(20)}"
                                 f"\n{self.daemon.log_tail(20)}\n{self.receiver.log_tail(20)}") from None

    def blackholed(self, prefix: str, node: str = "firewall") -> bool:
        route = kernel_routes(self.topo, node).get(prefix)
        return route is not None and route.type == "blackhole"

    def backend_states(self, prefix: str) -> dict[str, str]:
        return {name: b["state"] for name, b in self.bans()[prefix]["backends"].items()}


def exabgp_env(daemon: F2bBgp) -> dict[str, str]:
    """The test's only departures from exabgp/exabgp.env (environment variables win over the file)."""
    return {
        "exabgp_daemon_user": "root",
        "exabgp_log_destination": "stdout",
        "F2B_BGP_BRIDGE_SOCKET": str(daemon.workdir / "exabgp.sock"),
    }


@pytest.fixture(scope="module", params=["frr", "bird", "openbgpd", "gobgp"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with ExitStack() as stack:
        workdir = make_workdir("exabgp-live")
        stack.callback(remove_workdir, workdir)
        topo = stack.enter_context(Topology())
        stack.enter_context(ServerListener(topo))
        receiver = start_receiver(stack, request.param, topo, workdir)
        daemon = stack.enter_context(F2bBgp(topo.ns("injector"), DAEMON_CONFIG))
        # started as docs/peering.md says: exabgp --env-file exabgp.env server exabgp.conf
        conf = with_bridge_program(EXABGP_DIR / "exabgp.conf", workdir, str(reference_config().exabgp.bridge_program))
        exabgp = stack.enter_context(Exabgp(topo.ns("injector"), conf, listen=INJECTOR, workdir=workdir,
                                            env=exabgp_env(daemon), env_file=EXABGP_DIR / "exabgp.env"))
        yield Lab(request.param, topo, receiver, daemon, exabgp)


@pytest.fixture(autouse=True)
def clean(lab: Lab) -> Iterator[None]:
    """Every step starts and ends with no ban."""
    yield
    lab.daemon.call("flush")


# --- steps ----------------------------------------------------------------------------------------

def test_010_session_up_and_status_shows_the_peer(lab: Lab) -> None:
    assert_established(lab.peer, INJECTOR, timeout=SETTLE)
    lab.wait(lambda: lab.peer_state()[0] == "up", "status: peer up")
    status = lab.status()
    assert status["ready"] and status["bridge"]["exabgp_pid"] == lab.exabgp.processes[-1].pid
    text = lab.daemon.cli("status").stdout
    assert f"(ExaBGP pid {lab.exabgp.processes[-1].pid})" in text and f"peer {FIREWALL}: up since" in text, text


@pytest.mark.parametrize("family", FAMILIES)
def test_020_ban_reaches_the_receiver_with_the_blackhole_community(lab: Lab, family: str) -> None:
    attacker = ATTACKER[family]
    assert probe(lab.topo, HOSTS["server"][family]) == (True, True)
    lab.ban(HOSTS["attacker"][family])
    # 1. active only after ExaBGP's done (and the kernel backend's netlink ack), and the receiver has it with 65535:666
    assert lab.backend_states(attacker) == {"exabgp": "active", "kernel": "active"}
    assert lab.blackholed(attacker, node="injector")
    assert_route(lab.peer, attacker, communities=[BLACKHOLE], timeout=SETTLE)
    if lab.installs:
        # 2. FRR and BIRD install it as a drop: the attacker no longer reaches the server
        lab.wait(lambda: lab.blackholed(attacker), f"kernel blackhole {attacker} on the firewall")
        assert probe(lab.topo, HOSTS["server"][family]) == (False, False)


@pytest.mark.parametrize("family", FAMILIES)
def test_030_withdraw_removes_it_everywhere(lab: Lab, family: str) -> None:
    attacker = ATTACKER[family]
    lab.ban(HOSTS["attacker"][family])
    assert_route(lab.peer, attacker, communities=[BLACKHOLE], timeout=SETTLE)
    assert lab.daemon.cli("withdraw", HOSTS["attacker"][family]).returncode == ExitCode.OK
    assert_no_route(lab.peer, attacker, timeout=SETTLE)
    if lab.installs:
        lab.wait(lambda: not lab.blackholed(attacker), f"{attacker} gone from the firewall's kernel")
        lab.wait(lambda: probe(lab.topo, HOSTS["server"][family]).tcp, "traffic flows again")


def test_040_exabgp_restart_replays_every_active_route(lab: Lab) -> None:
    for family in FAMILIES:
        lab.ban(HOSTS["attacker"][family])
        assert_route(lab.peer, ATTACKER[family], communities=[BLACKHOLE], timeout=SETTLE)
    created = {p: b["owners"][0]["created"] for p, b in lab.bans().items()}
    # 1. ExaBGP dies: the receiver drops its routes, the daemon shows them pending
    lab.exabgp.processes[-1].kill(signal.SIGKILL)
    for family in FAMILIES:
        assert_no_route(lab.peer, ATTACKER[family], timeout=SETTLE)
    lab.wait(lambda: all(b["state"] == "pending" for b in lab.bans().values()), "bans pending while ExaBGP is down")
    assert all(lab.backend_states(p) == {"exabgp": "pending", "kernel": "active"} for p in ATTACKER.values())
    # 2. a ban while ExaBGP is down is stored, and the client says so with exit code 6
    result = lab.daemon.cli("ban", SPARE["4"])
    assert result.returncode == ExitCode.PENDING, result.stdout + result.stderr
    # 3. ExaBGP back: every active route returns without any new ban
    lab.exabgp.restart()
    for prefix in [*ATTACKER.values(), host_prefix(SPARE["4"])]:
        assert_route(lab.peer, prefix, communities=[BLACKHOLE], timeout=SETTLE)
    lab.wait(lambda: all(b["state"] == "active" for b in lab.bans().values()), "bans active after the replay")
    assert {p: lab.bans()[p]["owners"][0]["created"] for p in created} == created


def test_050_session_reset_brings_the_routes_back(lab: Lab) -> None:
    for family in FAMILIES:
        lab.ban(HOSTS["attacker"][family])
        assert_route(lab.peer, ATTACKER[family], communities=[BLACKHOLE], timeout=SETTLE)
    lab.wait(lambda: lab.peer_state()[0] == "up", "peer up")
    _, since = lab.peer_state()
    reset_session(lab.receiver)
    # 1. ExaBGP saw the session go down and come up again ...
    lab.wait(lambda: lab.peer_state()[0] == "up" and lab.peer_state()[1] > since, "peer up again after the reset")
    # 2. ... and sent its routes again by itself
    assert_established(lab.peer, INJECTOR, timeout=SETTLE)
    for family in FAMILIES:
        assert_route(lab.peer, ATTACKER[family], communities=[BLACKHOLE], timeout=SETTLE)


def test_060_daemon_restart_keeps_routes_in_place(lab: Lab) -> None:
    lab.ban(HOSTS["attacker"]["4"])
    assert_route(lab.peer, ATTACKER["4"], communities=[BLACKHOLE], timeout=SETTLE)
    lab.daemon.kill()
    lab.daemon.start()
    # the bridge reconnects; the replay finds the route in ExaBGP and sends nothing
    lab.wait(lambda: lab.status()["ready"], "bridge reconnected")
    lab.wait(lambda: lab.bans()[ATTACKER["4"]]["state"] == "active", "ban active after the replay")
    assert lab.status()["counters"]["announced"] == 0
    assert lab.status()["counters"]["connects"] == 1
    assert_route(lab.peer, ATTACKER["4"], communities=[BLACKHOLE], timeout=SETTLE)


def test_070_expiry_withdraws_by_itself(lab: Lab) -> None:
    lab.ban(HOSTS["attacker"]["6"], "--bantime", "2")
    assert_route(lab.peer, ATTACKER["6"], communities=[BLACKHOLE], timeout=SETTLE)
    assert_no_route(lab.peer, ATTACKER["6"], timeout=SETTLE)
    assert ATTACKER["6"] not in lab.bans()


def test_080_a_stalled_exabgp_times_out_and_the_replay_repairs_it(lab: Lab) -> None:
    exabgp = lab.exabgp.processes[-1]
    exabgp.kill(signal.SIGSTOP)
    try:
        # 1. no ack within ack_timeout: the ban is stored, pending, and the client says so
        result = lab.daemon.cli("ban", HOSTS["attacker"]["4"])
        assert result.returncode == ExitCode.PENDING, result.stdout + result.stderr
        assert lab.backend_states(ATTACKER["4"]) == {"exabgp": "pending", "kernel": "active"}
        status = lab.status()
        assert status["counters"]["timeouts"] >= 1 and "ack" in status["last_error"], status
        # 2. the bridge reconnects at once, and the replay's `show adj-rib out` times out as well
        lab.wait(lambda: lab.status()["counters"]["timeouts"] >= 2, "the replay timed out too", timeout=4 * ACK_TIMEOUT)
    finally:
        exabgp.kill(signal.SIGCONT)
    # 3. ExaBGP runs again: the late acks and show output go nowhere, the next reconnect replays the store
    assert_route(lab.peer, ATTACKER["4"], communities=[BLACKHOLE], timeout=SETTLE)
    lab.wait(lambda: lab.bans()[ATTACKER["4"]]["state"] == "active", "ban active after the replay")
    lab.daemon.call("flush")
    assert_no_route(lab.peer, ATTACKER["4"], timeout=SETTLE)
    assert ipv6_count(lab.receiver) == 0


def test_085_changed_attributes_are_announced_after_a_reload_and_a_restart(lab: Lab) -> None:
    lab.wait(lambda: lab.status()["ready"], "bridge connected")
    lab.ban(ATTACKER["4"])
    assert_route(lab.peer, ATTACKER["4"], communities=[BLACKHOLE], timeout=SETTLE)
    original = lab.daemon.config.read_text()
    try:
        lab.daemon.config.write_text(original.replace("[bgp]\n", '[bgp]\ncommunities = ["65001:666"]\n'))
        os.kill(lab.daemon.processes[-1].pid, signal.SIGHUP)
        assert_route(lab.peer, ATTACKER["4"], communities=[BLACKHOLE, "65001:666"], timeout=SETTLE)
    finally:
        lab.daemon.config.write_text(original)
    lab.daemon.kill()
    lab.daemon.start()  # the store remembers what ExaBGP was told: the old community goes

    def plain() -> bool:
        route = lab.peer.rib().get(ATTACKER["4"])
        return route is not None and BLACKHOLE in route.communities and "65001:666" not in route.communities

    lab.wait(plain, "route announced again without 65001:666")


def test_900_ten_thousand_bans_arrive_and_go(lab: Lab) -> None:
    prefixes = [f"2001:db8:203:1::{i:x}" for i in range(1, STORM + 1)]
    lab.wait(lambda: lab.status()["ready"], "bridge connected")  # also when run alone (-k 900)
    started = time.monotonic()
    answers = pipelined_bans(lab.daemon.socket, prefixes)
    took = time.monotonic() - started
    assert [a.get("ok") for a in answers].count(True) == STORM, [a for a in answers if not a.get("ok")][:3]
    assert all(a["state"] == "active" for a in answers), {a["state"] for a in answers}
    lab.wait(lambda: ipv6_count(lab.receiver) == STORM, f"{STORM} IPv6 routes on {lab.name}", timeout=120)
    print(f"{lab.name}: {STORM} bans acknowledged by ExaBGP in {took:.1f} s, "
          f"lines sent {lab.status()['counters']['lines']}")
    assert lab.daemon.call("flush")["removed"] == STORM
    lab.wait(lambda: ipv6_count(lab.receiver) == 0, f"no IPv6 route left on {lab.name}", timeout=120)


def pipelined_bans(path: Path, addresses: list[str]) -> list[dict]:
    """Send every ban on one connection without waiting, read the answers (in order) meanwhile."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(300)
        conn.connect(str(path))
        payload = b"".join(json.dumps({"op": "ban", "prefix": a, "jail": "storm"}).encode() + b"\n"
                           for a in addresses)
        writer = threading.Thread(target=conn.sendall, args=(payload,), daemon=True)
        writer.start()
        reader = conn.makefile("rb")
        answers = [json.loads(reader.readline()) for _ in addresses]
        writer.join(30)
        return answers
