"""Issue 6 live scenario: the shipped firewall snippets, byte for byte, against routes announced by hand.

ExaBGP on the injector plays a broken injector: it announces what f2b-bgp's guards would never
send, so each firewall must refuse it on its own. Addresses are the lab's (docs/contracts.md);
"4"/"6" is the address family.

| step | announced by hand (IPv4 / IPv6) | frr, bird | openbgpd (Linux: RIB only) |
|---|---|---|---|
| 010 | (none) shipped files parse: `bgpd -C`, `bird -p`, `bgpd -n`, `nft -c` | ok | ok |
| 020 | (none) session from the shipped config | Established | Established |
| 030 | attacker 203.0.113.66/32, 2001:db8:203::66/128 with 65535:666 | kernel blackhole, probe DROP; server still sees the echo | - |
| 040 | same, then the shipped uRPF files (`90-f2b-urpf.conf`, `f2b-urpf.nft`) | server no longer sees it; firewall counts the drop | - |
| 050 | protected server 198.51.100.130/32, 2001:db8:2::10/128; discard next-hop 192.0.2.1/32, 100::1/128; short 203.0.113.0/24, 2001:db8:203::/56 (the reference accepts IPv6 /64 for its widened bans); no community 203.0.113.77/32, 2001:db8:203::77/128; plus an accepted one | only the accepted one in RIB and kernel | RIB holds exactly the accepted one |
| 060 | prefix limit 5 (NOT the shipped file: the reference config with prefix_limit = 5), IPv4 | refused routes not counted; the 6th accepted route closes the session | refused routes counted: the 6th received route closes it |
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from f2b_bgp.peering import render
from f2b_bgp.peering.regenerate import EXAMPLE_DIRS, reference_config
from tests.lab.asserts import assert_established, assert_route
from tests.lab.bird import Bird
from tests.lab.exabgp import Exabgp, exabgp_config
from tests.lab.frr import FRR_DIR, Frr
from tests.lab.netns import HOSTS, Topology, host_prefix
from tests.lab.openbgpd import OpenBgpd
from tests.lab.peers import Peer, kernel_routes, peer_for
from tests.lab.probe import SERVER_ECHO_COUNTER, ServerListener, nstat, probe
from tests.lab.process import make_workdir, remove_workdir
from tests.lab.wait import wait_until

REPO = Path(__file__).parents[2]
SHIPPED = {target: REPO / EXAMPLE_DIRS[target] for target in ("frr", "bird", "openbgpd")}
FAMILIES = ("4", "6")
FIREWALL, INJECTOR = HOSTS["firewall"]["4"], HOSTS["injector"]["4"]
BLACKHOLE = "65535:666"
# portable OpenBGPD on Linux has no pf tables: override the macro the shipped file documents for this
OPENBGPD_LINUX = ("-D", "f2b_install=nexthop blackhole")
SETTLE = 20  # seconds for a route or a session to change state
# how each receiver turns an accepted route into a drop, as its peer adapter reports the next hop
DROP_NEXTHOP = {"frr": {"4": "192.0.2.1", "6": "100::1"}, "bird": {"4": "blackhole", "6": "blackhole"}}

ATTACKER = {f: host_prefix(HOSTS["attacker"][f]) for f in FAMILIES}
MARKER = {"4": "203.0.113.99/32", "6": "2001:db8:203::99/128"}  # accepted, announced after the refused ones
REFUSED = {  # why -> prefix per family, each with the community unless "no community"
    "protected": {"4": "198.51.100.130/32", "6": "2001:db8:2::10/128"},
    "discard next-hop": {"4": "192.0.2.1/32", "6": "100::1/128"},
    "shorter than the guards allow": {"4": "203.0.113.0/24", "6": "2001:db8:203::/56"},
    "no community": {"4": "203.0.113.77/32", "6": "2001:db8:203::77/128"},
}


# --- receivers: the lab's daemon fixtures and peer adapters, plus what this scenario asks -----------

class FrrExtras:
    def __init__(self, daemon: Frr) -> None:
        self.daemon = daemon

    def received(self, family: str) -> int:
        """Routes in Adj-RIB-In before policy (kept by `soft-reconfiguration inbound`)."""
        out = self.daemon.vtysh_json(f"show bgp {_afi(family)} unicast neighbors {INJECTOR} received-routes json")
        return len(out.get("receivedRoutes", {}))

    def limit_trips(self) -> int:
        """Notifications sent, once the last reset was the prefix limit."""
        if "Maximum Number of Prefixes Reached" not in self.daemon.vtysh(f"show bgp neighbors {INJECTOR}"):
            return 0
        state = self.daemon.vtysh_json(f"show bgp neighbors {INJECTOR} json")
        return state[INJECTOR]["messageStats"]["notificationsSent"]

    def recover(self) -> None:
        self.daemon.vtysh(f"clear bgp {INJECTOR}")


class BirdExtras:
    def __init__(self, daemon: Bird) -> None:
        self.daemon = daemon

    def received(self, family: str) -> int:
        """Import updates received on the family's channel (BIRD keeps no refused routes)."""
        text = self.daemon.birdc("show protocols all f2b_injector")
        channel = text.split(f"Channel ipv{family}", 1)[1].split("Channel ipv", 1)[0]
        return int(re.search(r"Import updates:\s+(\d+)", channel).group(1))  # type: ignore[union-attr]

    def limit_trips(self) -> int:
        """`action disable` leaves the protocol down: it trips once at most."""
        return int("Route limit exceeded" in self.daemon.birdc("show protocols f2b_injector"))

    def recover(self) -> None:
        self.daemon.birdc("enable f2b_injector")


class OpenBgpdExtras:
    def __init__(self, daemon: OpenBgpd) -> None:
        self.daemon = daemon

    def received(self, family: str) -> int:
        rib_in = self.daemon.bgpctl("show", "rib", "in").get("rib", [])
        return len([r for r in rib_in if _family_of(r["prefix"]) == family])

    def limit_trips(self) -> int:
        return "\n".join(p.read_text(errors="replace") for p in self.daemon.logs()).count("prefix limit reached")

    def recover(self) -> None:
        self.daemon.bgpctl("neighbor", INJECTOR, "up", json_output=False)


Extras = FrrExtras | BirdExtras | OpenBgpdExtras


def _afi(family: str) -> str:
    return "ipv4" if family == "4" else "ipv6"


def _family_of(prefix: str) -> str:
    return "6" if ":" in prefix else "4"


def start_receiver(stack: ExitStack, target: str, topo: Topology, files: dict[str, Path]) -> tuple[Peer, Extras]:
    ns = topo.ns("firewall")
    if target == "frr":
        frr = stack.enter_context(Frr(ns, {d: files[f"{d}.conf"] for d in ("zebra", "staticd", "bgpd")}))
        return peer_for(frr), FrrExtras(frr)
    if target == "bird":
        bird = stack.enter_context(Bird(ns, files["bird.conf"]))
        return peer_for(bird), BirdExtras(bird)
    bgpd = stack.enter_context(OpenBgpd(ns, files["bgpd.conf"], extra_args=OPENBGPD_LINUX))
    return peer_for(bgpd), OpenBgpdExtras(bgpd)


# --- the lab ---------------------------------------------------------------------------------------

class Lab:
    """One topology, one receiver running the files under test, ExaBGP announcing by hand."""

    def __init__(self, target: str, topo: Topology, peer: Peer, extras: Extras, exabgp: Exabgp) -> None:
        self.target, self.topo, self.peer, self.extras, self.exabgp = target, topo, peer, extras, exabgp

    def announce(self, prefix: str, community: bool = True) -> None:
        tail = f" community [{BLACKHOLE}]" if community else ""
        self.exabgp.send(f"announce route {prefix} next-hop {_next_hop(prefix)}{tail}")

    def withdraw(self, prefix: str) -> None:
        self.exabgp.send(f"withdraw route {prefix} next-hop {_next_hop(prefix)}")

    def established(self) -> bool:
        return self.peer.established(INJECTOR)

    def accepted(self, family: str) -> set[str]:
        """The post-policy RIB's prefixes of one family."""
        return {prefix for prefix in self.peer.rib() if _family_of(prefix) == family}

    def blackholes(self) -> set[str]:
        """Blackholes BGP installed in the firewall's kernel (the discard next-hops are blackholes too,
        installed by staticd)."""
        routes = kernel_routes(self.topo, "firewall")
        return {p for p, r in routes.items() if r.type == "blackhole" and r.protocol in ("bgp", "bird")}

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = SETTLE) -> None:
        """wait_until, failing with the receiver's RIB, the kernel and the daemon log."""
        try:
            wait_until(predicate, timeout, what)
        except AssertionError as err:
            rib = {p: str(r) for p, r in self.peer.rib().items()} if self.established() else "session down"
            raise AssertionError(f"{self.target}: {err}\nRIB: {rib}\nkernel blackholes: {sorted(self.blackholes())}"
                                 f"\n{self.peer.log_tail(15)}") from None


def _next_hop(prefix: str) -> str:
    return HOSTS["injector"]["6" if ":" in prefix else "4"]


@pytest.fixture(scope="module", params=["frr", "bird", "openbgpd"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    yield from _lab(request.param, shipped_files(request.param))


def shipped_files(target: str) -> dict[str, Path]:
    """The files under test: the shipped ones, byte for byte."""
    return {name: SHIPPED[target] / name for name in render(target, reference_config())}


def _lab(target: str, files: dict[str, Path]) -> Iterator[Lab]:
    config = reference_config()
    with ExitStack() as stack:
        exa_dir = make_workdir("peering-exabgp")
        stack.callback(remove_workdir, exa_dir)
        topo = stack.enter_context(Topology())
        stack.enter_context(ServerListener(topo))
        peer, extras = start_receiver(stack, target, topo, files)
        conf = exabgp_config(exa_dir, FIREWALL, INJECTOR, INJECTOR, config.bgp.local_as, config.bgp.peers[0].asn)
        exabgp = stack.enter_context(Exabgp(topo.ns("injector"), conf, listen=INJECTOR, workdir=exa_dir,
                                            env={"exabgp_api_ack": "false"}))
        assert_established(peer, INJECTOR, timeout=30)
        yield Lab(target, topo, peer, extras, exabgp)


# --- steps -----------------------------------------------------------------------------------------

def test_010_shipped_files_parse() -> None:
    frr = make_workdir("peering-frr-check")
    shutil.chown(frr, "frr", "frr")
    injector = REPO / EXAMPLE_DIRS["frr-injector"]
    try:
        for conf in [*(SHIPPED["frr"] / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")),
                     injector / "zebra.conf", injector / "bgpd.conf"]:
            out = _run([str(FRR_DIR / conf.stem), "-C", "-f", str(conf), "--vty_socket", str(frr),
                        "-z", str(frr / "zserv.api"), "-P", "0", "-i", str(frr / f"{conf.stem}.pid")])
            # -C exits 0 even on errors; it logs each one with its config line
            assert "config line" not in out and "Configuration failed" not in out, f"{conf}:\n{out}"
    finally:
        remove_workdir(frr)
    assert "error" not in _run(["bird", "-p", "-c", str(SHIPPED["bird"] / "bird.conf")]).lower()
    assert "configuration OK" in _run(["bgpd", "-n", *OPENBGPD_LINUX, "-f", str(SHIPPED["openbgpd"] / "bgpd.conf")])
    for target in ("frr", "bird"):
        _run(["nft", "-c", "-f", str(SHIPPED[target] / "f2b-urpf.nft")])


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{' '.join(argv)}: rc {result.returncode}\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


def test_020_session_up_from_the_shipped_config(lab: Lab) -> None:
    assert lab.established()


@pytest.mark.parametrize("family", FAMILIES)
def test_030_blackhole_drops_the_attacker_but_only_by_destination(lab: Lab, family: str) -> None:
    if lab.target == "openbgpd":
        pytest.skip("portable OpenBGPD on Linux installs no routes (see docs/peering.md); its RIB is tested in 050")
    attacker, server = ATTACKER[family], HOSTS["server"][family]
    # 1. before any announcement the attacker reaches the server
    assert probe(lab.topo, server) == (True, True)
    lab.announce(attacker)
    try:
        # 2. the firewall accepts it with the community and a drop as next hop, and installs a kernel blackhole
        assert_route(lab.peer, attacker, communities=[BLACKHOLE], nexthop=DROP_NEXTHOP[lab.target][family])
        lab.wait(lambda: attacker in lab.blackholes(), f"blackhole {attacker} in the firewall's kernel")
        # 3. no echo reply, no TCP connection ...
        before = nstat(lab.topo, "server")[SERVER_ECHO_COUNTER[family]]
        assert probe(lab.topo, server) == (False, False)
        # 4. ... but the echo still reached the server: without uRPF only the replies die
        assert nstat(lab.topo, "server")[SERVER_ECHO_COUNTER[family]] == before + 1
    finally:
        lab.withdraw(attacker)
    # 5. withdrawn: gone from the kernel, traffic flows again
    lab.wait(lambda: attacker not in lab.blackholes(), f"{attacker} gone from the firewall's kernel")
    assert probe(lab.topo, server) == (True, True)


@pytest.mark.parametrize("family", FAMILIES)
def test_040_shipped_urpf_drops_the_attackers_own_packets(lab: Lab, family: str) -> None:
    if lab.target == "openbgpd":
        pytest.skip("portable OpenBGPD on Linux installs no routes; on OpenBSD pf.conf's <f2b> table drops by source")
    attacker, server = ATTACKER[family], HOSTS["server"][family]
    lab.announce(attacker)
    try:
        lab.wait(lambda: attacker in lab.blackholes(), f"blackhole {attacker} in the firewall's kernel")
        # 1. the shipped uRPF files, loaded as an operator would
        files = SHIPPED[lab.target]
        lab.topo.run("firewall", ["sysctl", "-p", str(files / "90-f2b-urpf.conf")])
        lab.topo.run("firewall", ["nft", "-f", str(files / "f2b-urpf.nft")])
        try:
            server_before = nstat(lab.topo, "server")[SERVER_ECHO_COUNTER[family]]
            drops_before = _urpf_drops(lab, family)
            # 2. still dropped, and now the echo never reaches the server ...
            assert probe(lab.topo, server) == (False, False)
            assert nstat(lab.topo, "server")[SERVER_ECHO_COUNTER[family]] == server_before
            # 3. ... because the firewall dropped it on ingress (rp_filter for IPv4, the nft rule for IPv6)
            assert _urpf_drops(lab, family) > drops_before
        finally:
            lab.topo.run("firewall", ["nft", "delete", "table", "ip6", "f2b_urpf"])
            lab.topo.run("firewall", ["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
                                      "net.ipv4.conf.default.rp_filter=0"])
    finally:
        lab.withdraw(attacker)
    lab.wait(lambda: attacker not in lab.blackholes(), f"{attacker} gone from the firewall's kernel")
    assert probe(lab.topo, server) == (True, True)


def _urpf_drops(lab: Lab, family: str) -> int:
    if family == "4":
        return nstat(lab.topo, "firewall")["TcpExtIPReversePathFilter"]
    ruleset = lab.topo.run("firewall", ["nft", "list", "table", "ip6", "f2b_urpf"]).stdout
    return int(re.search(r"counter packets (\d+)", ruleset).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("family", FAMILIES)
def test_050_routes_a_broken_injector_sends_are_refused(lab: Lab, family: str) -> None:
    refused = {why: prefixes[family] for why, prefixes in REFUSED.items()}
    before = lab.extras.received(family)
    # 1. everything f2b-bgp's guards would refuse, then one route they accept
    for why, prefix in refused.items():
        lab.announce(prefix, community=why != "no community")
    lab.announce(MARKER[family])
    try:
        # 2. all of them reached the firewall ...
        lab.wait(lambda: lab.extras.received(family) >= before + len(refused) + 1,
                 f"{len(refused) + 1} more routes received before policy")
        lab.wait(lambda: MARKER[family] in lab.accepted(family), f"{MARKER[family]} accepted")
        # 3. ... and the RIB holds exactly the accepted one
        wrongly = lab.accepted(family) - {MARKER[family]}
        assert not wrongly, f"{lab.target} accepted {sorted(wrongly)}; each of {refused} must be refused"
        if lab.target != "openbgpd":
            lab.wait(lambda: MARKER[family] in lab.blackholes(), f"{MARKER[family]} in the firewall's kernel")
            assert not set(refused.values()) & lab.blackholes(), f"{lab.target} installed a refused route"
    finally:
        for prefix in [*refused.values(), MARKER[family]]:
            lab.withdraw(prefix)
    lab.wait(lambda: not lab.accepted(family), "the RIB empty again")


# --- prefix limit: its own lab, since it closes the session ------------------------------------

LIMIT = 5
LIMIT_HOLD = 3  # seconds the closed session must stay closed (OpenBGPD with `restart` flapped every ~0.06 s)
LIMIT_ACCEPTED = [f"203.0.113.{i}/32" for i in range(67, 67 + LIMIT + 1)]
LIMIT_REFUSED = [f"203.0.113.{i}/32" for i in range(80, 80 + LIMIT + 1)]  # announced without the community
COUNTS_REFUSED = {"frr": False, "bird": False, "openbgpd": True}


@pytest.fixture(params=["frr", "bird", "openbgpd"])
def limit_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """The reference config with prefix_limit = 5: generated here, not the shipped file (which says 10000)."""
    config = reference_config()
    config = dataclasses.replace(config, bgp=dataclasses.replace(config.bgp, prefix_limit=LIMIT))
    files = {}
    for name, text in render(request.param, config).items():
        files[name] = tmp_path / name
        files[name].write_text(text)
    yield from _lab(request.param, files)


def test_060_prefix_limit_behaves_as_documented(limit_lab: Lab) -> None:
    lab = limit_lab
    # 1. five refused routes
    for prefix in LIMIT_REFUSED[:LIMIT]:
        lab.announce(prefix, community=False)
    if COUNTS_REFUSED[lab.target]:
        # 2. OpenBGPD counts before filtering: one more refused route closes the session
        lab.wait(lambda: lab.extras.received("4") == LIMIT, f"{LIMIT} routes in Adj-RIB-In")
        last = LIMIT_REFUSED[LIMIT]
        lab.announce(last, community=False)
    else:
        # 2. FRR and BIRD count accepted routes: five refused plus five accepted keep the session up
        lab.wait(lambda: lab.extras.received("4") >= LIMIT, f"{LIMIT} refused routes received")
        for prefix in LIMIT_ACCEPTED[:LIMIT]:
            lab.announce(prefix)
        lab.wait(lambda: lab.accepted("4") == set(LIMIT_ACCEPTED[:LIMIT]), f"{LIMIT} routes accepted")
        assert lab.established()
        # 3. the sixth accepted route closes it
        last = LIMIT_ACCEPTED[LIMIT]
        lab.announce(last)

    def closed() -> bool:
        return lab.extras.limit_trips() == 1 and not lab.established()

    lab.wait(closed, "session closed by the prefix limit")
    # 4. it stays closed: no reconnect that trips the limit again
    assert_holds(closed, LIMIT_HOLD, "session closed, limit tripped once")
    # 5. and every blackhole it brought is gone: the limit fails open
    if lab.target != "openbgpd":
        lab.wait(lambda: not set(LIMIT_ACCEPTED) & lab.blackholes(), "blackholes removed with the session")
    # 6. back below the limit, the documented command brings the session and its routes back
    lab.withdraw(last)
    lab.extras.recover()
    lab.wait(lambda: lab.established(), "session Established again")
    if COUNTS_REFUSED[lab.target]:
        lab.wait(lambda: lab.extras.received("4") == LIMIT, f"{LIMIT} routes back in Adj-RIB-In")
    else:
        lab.wait(lambda: lab.accepted("4") == set(LIMIT_ACCEPTED[:LIMIT]), f"{LIMIT} routes accepted again")


def assert_holds(predicate: Callable[[], bool], seconds: float, what: str) -> None:
    """The opposite of wait_until: predicate stays true for `seconds` (checked every 0.05 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), f"no longer true within {seconds:g} s: {what}"
        time.sleep(0.05)
