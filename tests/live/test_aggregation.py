"""Issue 17 scenario: IPv6 bans widened to the attacker's /64, IPv4 bans escalated to their /24, at a real firewall.

Injector: f2b-bgp with the kernel backend and FRR, or with the ExaBGP backend and ExaBGP.
Firewall: FRR or BIRD (kernel backend), FRR (ExaBGP). Every snippet (firewall and injector,
exabgp.conf and exabgp.env too) is rendered by `f2b-bgp peering` from the daemon's own
config, which widens IPv6
bans to /64 and escalates 5 bans in one IPv4 /24 (IPv6 /48) within 10 min; its shortest
accepted lengths are /24 and /48, so the firewall accepts what the daemon makes.

The attacker's link is a connected /24 and /64 of the firewall, where no wider blackhole
could win; so the attackers of this scenario live behind it, on the attacker's loopback,
routed by the firewall through shorter routes (192.0.0.0/22, 2001:db8:203:100::/56) that
every blackhole is more specific than. 192.0.2.0/24 is TEST-NET-1, so the discard next-hop
moves out of it (bgp.discard_ipv4 = 198.51.100.9, inside the protected /24).

| step | action | expected at the firewall |
|---|---|---|
| 010 | start | session up; every attacker address reaches the server |
| 020 | ban 2001:db8:203:107::5 (sshd) | 2001:db8:203:107::/64 blackholed; ::5 and ::6 (its next address, never banned) dropped; `show ::6` names the /64 and ::5 |
| 025 | unban 2001:db8:203:107::5 (sshd) | the /64 goes; ::6 reaches the server again |
| 030 | ban 192.0.2.65 .. .69 (sshd) | the 5th ban escalates: 192.0.2.0/24 and the five /32s blackholed; every member and 192.0.2.70 (never banned) dropped |
| 040 | ban 203.0.113.67 .. .71 (203.0.113.240/28 is protected) | no /24: an `escalate-refused` event with the reason; the five /32s dropped, 203.0.113.72 reaches |
| 050 | withdraw 192.0.2.65, then withdraw 192.0.2.0/24 | .65 stays dropped by the /24 (the CLI says so); then .65 and .70 reach, .66 stays dropped by its own ban |
| 060 | reload with escalation bantime 20 s; ban 5 members for 2 s | members go after 2 s while the /24 keeps dropping them; the /24 goes at 20 s |
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode
from tests.lab.asserts import assert_established, assert_kernel_blackhole, assert_no_kernel_route, assert_no_route, assert_route
from tests.lab.bird import Bird
from tests.lab.exabgp import Exabgp, with_bridge_program
from tests.lab.f2bbgp import F2bBgp
from tests.lab.frr import Frr
from tests.lab.netns import HOSTS, Topology
from tests.lab.peers import BLACKHOLE, Peer, peer_for
from tests.lab.probe import ServerListener, probe
from tests.lab.process import make_workdir, remove_workdir
from tests.lab.wait import wait_until

REPO = Path(__file__).parents[2]
SERVER = HOSTS["server"]
V6_NET = "2001:db8:203:107::/64"
V6 = ["2001:db8:203:107::5", "2001:db8:203:107::6"]
V4_NET = "192.0.2.0/24"
V4 = [f"192.0.2.{i}" for i in range(65, 71)]  # five members and .70, never banned
REFUSED_NET = "203.0.113.0/24"
REFUSED = [f"203.0.113.{i}" for i in range(67, 73)]  # five members and .72, never banned
ATTACKER_ROUTES = ["192.0.0.0/22 via 203.0.113.66", "2001:db8:203:100::/56 via 2001:db8:203::66"]
SETTLE = 20

CONFIG = """[daemon]
socket = "{workdir}/api.sock"
database = "{workdir}/state.db"
retry_interval = 0.2
max_bantime = 86400

[guards]
protected = [{ prefix = "198.51.100.0/24", name = "our network" }, "2001:db8:1::/64", "2001:db8:2::/64",
             { prefix = "203.0.113.240/28", name = "lab dmz" }]
allow_special = ["203.0.113.0/24", "192.0.2.0/24", "2001:db8:203::/48"]
min_length_ipv4 = 24
min_length_ipv6 = 48

[aggregation]
ipv6_ban_length = 64

[aggregation.escalation]
enabled = true
ipv4_length = 24
ipv6_length = 48
threshold = 5
window = 600
bantime = ESCALATION_BANTIME

[bgp]
local_as = 65001
router_id = "198.51.100.2"
discard_ipv4 = "198.51.100.9"
next_hop_ipv4 = "198.51.100.2"
next_hop_ipv6 = "2001:db8:1::2"

[[bgp.peers]]
name = "fw1"
address = "198.51.100.1"
asn = 65000
local_address = "198.51.100.2"
"""
EXABGP_BACKEND = """
[backends.kernel]
enabled = false

[backends.exabgp]
enabled = true
bridge_socket = "{workdir}/exabgp.sock"
bridge_user = "root"  # the lab runs ExaBGP as root
bridge_program = "/usr/local/bin/f2b-bgp"
"""
# (firewall, injector)
SETUPS = [("frr", "kernel"), ("bird", "kernel"), ("frr", "exabgp")]


def config(injector: str, escalation_bantime: int = 3600) -> str:
    text = CONFIG.replace("ESCALATION_BANTIME", str(escalation_bantime))
    return text + EXABGP_BACKEND if injector == "exabgp" else text


@dataclass
class Lab:
    topo: Topology
    firewall: Peer
    daemon: F2bBgp
    injector: str

    def reaches(self, source: str) -> bool:
        family = "6" if ":" in source else "4"
        return probe(self.topo, SERVER[family], source=source).tcp

    def dropped(self, source: str) -> bool:
        return probe(self.topo, SERVER["6" if ":" in source else "4"], source=source) == (False, False)

    def ok(self, *args: str) -> str:
        result = self.daemon.cli(*args)
        assert result.returncode == ExitCode.OK, f"f2b-bgp {' '.join(args)}: {result.stderr}"
        return result.stdout

    def events(self, kind: str, prefix: str) -> list[str]:
        """The details of PREFIX's events of this kind, as `f2b-bgp events --prefix` gives them."""
        rows = json.loads(self.ok("events", "--prefix", prefix, "--json"))
        return [row["detail"] for row in rows if row["event"] == kind]


def render(target: str, config_file: Path, into: Path) -> Path:
    """`f2b-bgp peering TARGET` from the daemon's config: the firewall policy follows its settings."""
    out = into / target
    subprocess.run([sys.executable, "-m", "f2b_bgp", "--config", str(config_file), "peering", target, "--output-dir", str(out)],
                   check=True, capture_output=True, text=True, timeout=60, cwd=REPO)
    return out


@pytest.fixture(scope="module", params=SETUPS, ids=[f"{f}-{i}" for f, i in SETUPS])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    firewall, injector = request.param
    with ExitStack() as stack:
        snippets = make_workdir("aggregation-snippets")
        stack.callback(remove_workdir, snippets)
        topo = stack.enter_context(Topology(urpf="loose"))
        f2b = F2bBgp(topo.ns("injector"), config(injector))  # writes its config: the snippets come from it
        stack.callback(remove_workdir, f2b.workdir)  # if it never starts; its own exit removes it otherwise
        injector_files = render("frr-injector" if injector == "kernel" else "exabgp", f2b.config, snippets)
        firewall_files = render(firewall, f2b.config, snippets)
        topo.run("attacker", ["ip", "-batch", "-"], input="".join(
            f"addr add {a}/{'128' if ':' in a else '32'} dev lo\n" for a in V6 + V4 + REFUSED))
        topo.run("firewall", ["ip", "-batch", "-"], input="".join(f"route add {r}\n" for r in ATTACKER_ROUTES))
        stack.enter_context(ServerListener(topo))
        if firewall == "frr":
            daemon = stack.enter_context(Frr(topo.ns("firewall"), {d: firewall_files / f"{d}.conf"
                                                                  for d in ("zebra", "staticd", "bgpd")}))
        else:
            daemon = stack.enter_context(Bird(topo.ns("firewall"), firewall_files / "bird.conf"))
        if injector == "kernel":
            stack.enter_context(Frr(topo.ns("injector"), {d: injector_files / f"{d}.conf" for d in ("zebra", "bgpd")}))
        stack.enter_context(f2b)
        if injector == "exabgp":  # as docs/peering.md starts it: exabgp --env-file exabgp.env server exabgp.conf
            run = snippets / "run"
            run.mkdir()
            conf = with_bridge_program(injector_files / "exabgp.conf", run, "/usr/local/bin/f2b-bgp")
            stack.enter_context(Exabgp(topo.ns("injector"), conf, listen=HOSTS["injector"]["4"], workdir=run,
                                       env={"exabgp_daemon_user": "root", "exabgp_log_destination": "stdout"},
                                       env_file=injector_files / "exabgp.env"))
        yield Lab(topo, peer_for(daemon), f2b, injector)


def test_010_session_up_and_every_attacker_reaches_the_server(lab: Lab) -> None:
    assert_established(lab.firewall, HOSTS["injector"]["4"], timeout=30)
    for source in V6 + V4 + REFUSED:
        assert lab.reaches(source), f"{source} must reach the server before any ban"


def test_020_an_ipv6_attacker_is_dropped_in_its_whole_64_from_the_first_ban(lab: Lab) -> None:
    out = lab.ok("ban", V6[0], "--jail", "sshd", "--reason", "live test")
    assert out.startswith(f"{V6_NET} active until ") and f"widened from {V6[0]}" in out, out
    assert_route(lab.firewall, V6_NET, communities={BLACKHOLE}, timeout=SETTLE)
    assert_kernel_blackhole(lab.topo, "firewall", V6_NET, daemon=lab.firewall)
    assert lab.dropped(V6[0])
    assert lab.dropped(V6[1]), "the attacker's next address in its /64 must be dropped without a second ban"
    shown = lab.ok("show", V6[1])
    assert shown.startswith(f"{V6[1]}/128: blackholed by {V6_NET}, widened from {V6[0]} (sshd)"), shown


def test_025_unban_of_the_address_lifts_its_64(lab: Lab) -> None:
    assert lab.ok("unban", V6[0], "--jail", "sshd").strip() == f"{V6_NET}: removed sshd; withdrawn"
    assert_no_route(lab.firewall, V6_NET, timeout=SETTLE)
    wait_until(lambda: lab.reaches(V6[1]), SETTLE, f"{V6[1]} reaches the server again")


def test_030_five_attackers_of_one_24_escalate_to_the_24(lab: Lab) -> None:
    outs = [lab.ok("ban", address, "--jail", "sshd") for address in V4[:5]]
    assert [("escalated: " + V4_NET) in out for out in outs] == [False] * 4 + [True], outs
    for prefix in [V4_NET, *(f"{a}/32" for a in V4[:5])]:
        assert_route(lab.firewall, prefix, communities={BLACKHOLE}, timeout=SETTLE)
    assert_kernel_blackhole(lab.topo, "firewall", V4_NET, daemon=lab.firewall)
    for source in V4:  # the five members, and one more address of the /24 that nobody banned
        assert lab.dropped(source), f"{source} must be dropped at the firewall"
    shown = lab.ok("show", V4[5])
    assert shown.startswith(f"{V4[5]}/32: blackholed by {V4_NET}, escalated after 5 bans in 10 min"), shown
    assert lab.events("escalate", V4_NET) == ["5 bans: " + " ".join(f"{a}(sshd)" for a in V4[:5])]


def test_040_a_24_that_overlaps_a_protected_prefix_is_not_escalated(lab: Lab) -> None:
    outs = [lab.ok("ban", address, "--jail", "sshd") for address in REFUSED[:5]]
    assert not any("escalated" in out for out in outs), outs
    refusal = lab.events("escalate-refused", REFUSED_NET)
    assert refusal and refusal[-1].startswith("protected: 203.0.113.240/28 (lab dmz); members stay: "), refusal
    for address in REFUSED[:5]:
        assert_route(lab.firewall, f"{address}/32", communities={BLACKHOLE}, timeout=SETTLE)
    assert REFUSED_NET not in lab.firewall.rib()
    assert REFUSED_NET not in lab.ok("list", "--json")
    assert lab.dropped(REFUSED[0]) and lab.reaches(REFUSED[5])


def test_050_withdraw_of_a_member_while_covered_then_of_the_covering_prefix(lab: Lab) -> None:
    out = lab.ok("withdraw", V4[0])
    assert f"{V4[0]}/32: withdrawn (removed sshd)" in out and f"still blackholed inside {V4_NET}" in out, out
    assert_no_route(lab.firewall, f"{V4[0]}/32", timeout=SETTLE)
    assert lab.dropped(V4[0]), "the covering /24 still drops a withdrawn member"
    assert "removed escalation" in lab.ok("withdraw", V4_NET)
    assert_no_kernel_route(lab.topo, "firewall", V4_NET, timeout=SETTLE, daemon=lab.firewall)
    wait_until(lambda: lab.reaches(V4[0]) and lab.reaches(V4[5]), SETTLE, "the withdrawn member and .70 reach again")
    assert lab.dropped(V4[1]), "the other members keep their own bans"


def test_060_members_and_the_covering_ban_expire_on_their_own_clocks(lab: Lab) -> None:
    lab.ok("flush")
    lab.daemon.config.write_text(config(lab.injector, escalation_bantime=20).replace("{workdir}", str(lab.daemon.workdir)))
    log = lab.daemon.workdir / "daemon.log"
    reloads = log.read_text().count("reloaded config=")
    lab.daemon.kill(signal.SIGHUP)
    wait_until(lambda: log.read_text().count("reloaded config=") > reloads, SETTLE, "the daemon reloaded its config")
    assert "escalated: " + V4_NET in [lab.ok("ban", a, "--jail", "sshd", "--bantime", "2") for a in V4[:5]][-1]
    assert_kernel_blackhole(lab.topo, "firewall", V4_NET, daemon=lab.firewall)
    for address in V4[:5]:
        assert_no_route(lab.firewall, f"{address}/32", timeout=SETTLE)
    assert V4_NET in lab.firewall.rib() and lab.dropped(V4[0]), "members expired: the /24 still drops them"
    assert_no_kernel_route(lab.topo, "firewall", V4_NET, timeout=30, daemon=lab.firewall)
    wait_until(lambda: lab.reaches(V4[0]), SETTLE, f"{V4[0]} reaches again once the /24 expired")
    assert lab.ok("list", "--json").count("192.0.2.") == 0
