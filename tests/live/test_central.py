"""Issue 15 live scenario: two edges forward their bans over HTTPS to a central that speaks BGP to the firewall.

Central (injector namespace): f2b-bgp with the ExaBGP backend (ExaBGP from the shipped exabgp/ files) and
the HTTPS API on 198.51.100.2:8443, certificates made by trustme. Firewall: FRR, then BIRD, from the shipped
snippets. Edges (server namespace, 198.51.100.130): two f2b-bgp daemons whose only backend is `remote`,
tokens web1 and web2 (own claims only); web1 is fed by a real fail2ban-server (shipped routeros jail,
filter and bgp-blackhole.py action).

| step | action | expected at the firewall (FRR RIB) / central |
|---|---|---|
| 010 | start | session up; both edges' remote backend ready |
| 020 | web1 bans A, web2 bans B | A and B with 65535:666; central owners web1/sshd, web2/nginx |
| 030 | both ban S; web1 unbans S; web2 unbans S | S stays with two owners, with one, then goes |
| 040 | central stopped; edges ban C, D, unban A; central back | exactly the edges' current claims: B, C, D |
| 050 | web2 bans E for 3 s and is killed (-9) | E arrives, then the central withdraws it at its expiry |
| 060 | no token, revoked token, wrong CA, unban of another's claim, over quota, protected | refused, nothing changed |
| 070 | scrape /metrics on the central's localhost listener | routes, claims per owner, refusals, peer state |
| 080 | a RouterOS login failure in web1's fail2ban log; fail2ban unban | F arrives as web1/routeros, then goes |
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from f2b_bgp.errors import ExitCode
from f2b_bgp.peering.regenerate import reference_config
from f2b_bgp.tokens import digest
from tests.lab.asserts import assert_established
from tests.lab.bird import Bird
from tests.lab.exabgp import Exabgp, with_bridge_program
from tests.lab.fail2ban import Fail2banServer, append, fail2ban_missing
from tests.lab.f2bbgp import F2bBgp, lab_config
from tests.lab.frr import Frr
from tests.lab.netns import HOSTS, Topology
from tests.lab.peers import Peer, peer_for
from tests.lab.process import make_workdir, remove_workdir
from tests.lab.wait import wait_until
from tests.live.test_exabgp import DAEMON_CONFIG, EXABGP_DIR, exabgp_env
from tests.live.test_fail2ban import routeros_line
from tests.live.test_peering import SHIPPED

CENTRAL = HOSTS["injector"]["4"]
URL = f"https://{CENTRAL}:8443"
BLACKHOLE = "65535:666"
SETTLE = 30
OUTAGE = 5.0  # seconds the central is away while the edges keep banning and unbanning
CHURN_MAX = 40
REPO = Path(__file__).parents[2]
A, B, S, C, D, E, F = (f"203.0.113.{n}" for n in (11, 12, 13, 14, 15, 16, 17))
SECRETS = {"web1": "f2b_live-web1", "web2": "f2b_live-web2", "ops": "f2b_live-ops", "small": "f2b_live-small",
           "old": "f2b_live-old"}


def token_table(name: str, **extra: object) -> str:
    lines = [f'[[api.tokens]]\nname = "{name}"\nsha256 = "{digest(SECRETS[name])}"']
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


TOKENS = (token_table("web1") + token_table("web2") + token_table("small", max_claims=1)
          + token_table("ops", own_claims_only=False, operations=["ping", "ban", "unban", "withdraw", "list",
                                                                  "show", "status", "flush", "sync"]))
REVOKED = token_table("old")


def central_config(tls: Path, tokens: str) -> str:
    base = DAEMON_CONFIG.replace("[backends.kernel]\nenabled = true", "[backends.kernel]\nenabled = false")
    return base + f"""
[api.https]
listen = ["{CENTRAL}:8443"]
certificate = "{tls / 'central.pem'}"
key = "{tls / 'central.key'}"
[api.metrics]
listen = ["127.0.0.1:9180"]
{tokens}"""


def edge_config(name: str, tls: Path) -> str:
    return lab_config(retry_interval=0.2, rest=f"""[backends.kernel]
enabled = false
[[backends.remote]]
name = "central"
url = "{URL}"
token_file = "{tls / name}.token"
ca_file = "{tls / 'ca.pem'}"
timeout = 3
[api.metrics]
listen = []
""")


FAIL2BAN_JAILS = """
[DEFAULT]
ignoreself = false
ignoreip =
backend = polling
bantime = 600

[routeros]
logpath = {dir}/routeros.log
maxretry = 1
banaction = bgp-blackhole.py
banaction_allports = bgp-blackhole.py

[sshd]
enabled = false
"""


@dataclass
class Lab:
    topo: Topology
    tls: Path
    firewall: Peer
    central: F2bBgp
    edges: dict[str, F2bBgp]
    fail2ban: Fail2banServer | None

    def attackers(self) -> set[str]:
        """The firewall's BGP routes in the attacker range that carry the blackhole community."""
        return {p for p, r in self.firewall.rib().items() if p.startswith("203.0.113.") and BLACKHOLE in r.communities}

    def wait_firewall(self, expected: set[str], what: str, timeout: float = SETTLE) -> None:
        want = {f"{a}/32" for a in expected}
        try:
            wait_until(lambda: self.attackers() == want, timeout, what)
        except AssertionError as err:
            raise AssertionError(f"{err}\nfirewall has {sorted(self.attackers())}, wanted {sorted(want)}\n"
                                 f"{self.central.log_tail(30)}") from None

    def owners(self) -> dict[str, list[str]]:
        return {b["prefix"].split("/")[0]: sorted(o["jail"] for o in b["owners"])
                for b in self.central.call("list")["bans"]}

    def edge(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.edges[name].cli(*args)

    def remote(self, token: str, *args: str, ca: str = "ca.pem") -> subprocess.CompletedProcess[str]:
        """The CLI against the central's HTTPS API, from the server namespace."""
        (self.tls / f"{token}.token").write_text(SECRETS.get(token, "f2b_never-issued") + "\n")
        argv = [sys.executable, "-m", "f2b_bgp", "--url", URL, "--token-file", str(self.tls / f"{token}.token"),
                "--ca-file", str(self.tls / ca), *args]
        return self.topo.run("server", argv, check=False, timeout=60)


def make_pki(tls: Path) -> None:
    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert(CENTRAL)
    cert.cert_chain_pems[0].write_to_path(str(tls / "central.pem"))
    cert.private_key_pem.write_to_path(str(tls / "central.key"))
    ca.cert_pem.write_to_path(str(tls / "ca.pem"))
    other.cert_pem.write_to_path(str(tls / "other-ca.pem"))
    for name, secret in SECRETS.items():
        (tls / f"{name}.token").write_text(secret + "\n")


@pytest.fixture(scope="module", params=["frr", "bird"])
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with ExitStack() as stack:
        tls = make_workdir("central-tls")
        stack.callback(remove_workdir, tls)
        make_pki(tls)
        topo = stack.enter_context(Topology())
        if request.param == "frr":
            firewall = stack.enter_context(Frr(topo.ns("firewall"), {d: SHIPPED["frr"] / f"{d}.conf"
                                                                     for d in ("zebra", "staticd", "bgpd")}))
        else:
            firewall = stack.enter_context(Bird(topo.ns("firewall"), SHIPPED["bird"] / "bird.conf"))
        central = stack.enter_context(F2bBgp(topo.ns("injector"), central_config(tls, TOKENS + REVOKED)))
        conf = with_bridge_program(EXABGP_DIR / "exabgp.conf", central.workdir,
                                   str(reference_config().exabgp.bridge_program))
        stack.enter_context(Exabgp(topo.ns("injector"), conf, listen=CENTRAL, workdir=central.workdir,
                                   env=exabgp_env(central), env_file=EXABGP_DIR / "exabgp.env"))
        edges = {name: stack.enter_context(F2bBgp(topo.ns("server"), edge_config(name, tls)))
                 for name in ("web1", "web2")}
        fail2ban = None
        if not fail2ban_missing():
            socket = edges["web1"].socket
            action = {"bgp-blackhole.local": f"[Init]\nsocket = {socket}\n"}
            fail2ban = stack.enter_context(Fail2banServer(FAIL2BAN_JAILS, action, env={"F2B_BGP_SOCKET": str(socket)},
                                                          log_files=("routeros.log",)))
        yield Lab(topo, tls, peer_for(firewall), central, edges, fail2ban)


def edge_status(lab: Lab, name: str) -> dict:
    return lab.edges[name].call("status")["backends"]["central"]


def test_010_session_up_and_edges_connected(lab: Lab) -> None:
    assert_established(lab.firewall, CENTRAL, timeout=SETTLE)
    for name in lab.edges:
        wait_until(lambda n=name: edge_status(lab, n)["ready"], SETTLE, f"edge {name} connected to the central")


def test_020_bans_from_both_edges_reach_the_firewall(lab: Lab) -> None:
    started = time.monotonic()
    assert lab.edge("web1", "ban", A, "--jail", "sshd").returncode == ExitCode.OK
    assert lab.edge("web2", "ban", B, "--jail", "nginx").returncode == ExitCode.OK
    lab.wait_firewall({A, B}, "A and B at the firewall")
    print(f"edge to firewall: {time.monotonic() - started:.2f} s for two bans")
    assert lab.owners() == {A: ["web1/sshd"], B: ["web2/nginx"]}


def test_030_one_address_two_edges_goes_with_the_last(lab: Lab) -> None:
    for name in ("web1", "web2"):
        assert lab.edge(name, "ban", S, "--jail", "sshd").returncode == ExitCode.OK
    lab.wait_firewall({A, B, S}, "S at the firewall")
    assert lab.owners()[S] == ["web1/sshd", "web2/sshd"]
    assert lab.edge("web1", "unban", S, "--jail", "sshd").returncode == ExitCode.OK
    assert lab.owners()[S] == ["web2/sshd"]
    assert lab.attackers() >= {f"{S}/32"}
    assert lab.edge("web2", "unban", S, "--jail", "sshd").returncode == ExitCode.OK
    lab.wait_firewall({A, B}, "S gone with its last owner")


def test_040_central_away_then_back_converges_to_the_edges_claims(lab: Lab) -> None:
    lab.central.stop()
    away = time.monotonic()
    # the edges keep working: their bans are stored and pending (exit 6) while the central is away
    assert lab.edge("web1", "ban", C, "--jail", "sshd").returncode == ExitCode.PENDING
    assert lab.edge("web2", "ban", D, "--jail", "sshd").returncode == ExitCode.PENDING
    assert lab.edge("web1", "unban", A, "--jail", "sshd").returncode == ExitCode.OK
    assert not edge_status(lab, "web1")["ready"] and "central" in edge_status(lab, "web1")["last_error"]
    # ... and keep banning and unbanning for OUTAGE seconds: each edge ends with one churn address banned
    last = churn(lab, away + OUTAGE)
    assert lab.attackers() == {f"{A}/32", f"{B}/32"}  # ExaBGP keeps what it announced: routes stay in place
    lab.central.start()
    lab.wait_firewall({B, C, D, *last.values()}, "the firewall holds exactly the edges' claims after the return")
    print(f"central stopped, edges churning, back and in sync after {time.monotonic() - away:.1f} s")
    for name in lab.edges:
        wait_until(lambda n=name: lab.edges[n].call("status")["routes"]["pending"] == 0, SETTLE, f"{name} in sync")
    assert lab.owners() == {B: ["web2/nginx"], C: ["web1/sshd"], D: ["web2/sshd"],
                            last["web1"]: ["web1/churn"], last["web2"]: ["web2/churn"]}
    for name, address in last.items():
        assert lab.edge(name, "unban", address, "--jail", "churn").returncode == ExitCode.OK
    lab.wait_firewall({B, C, D}, "churn addresses gone")


def churn(lab: Lab, until: float) -> dict[str, str]:
    """Each edge bans a new address and unbans its previous one, until UNTIL (at most CHURN_MAX rounds)."""
    last: dict[str, str] = {}
    for index in range(CHURN_MAX):
        if time.monotonic() >= until:
            break
        for offset, name in enumerate(lab.edges):
            address = f"203.0.113.{100 + 2 * index + offset}"
            assert lab.edge(name, "ban", address, "--jail", "churn").returncode == ExitCode.PENDING
            if name in last:
                assert lab.edge(name, "unban", last[name], "--jail", "churn").returncode == ExitCode.OK
            last[name] = address
    return last


def test_050_an_edge_gone_for_good_has_its_claims_expire_at_the_central(lab: Lab) -> None:
    assert lab.edge("web2", "ban", E, "--jail", "sshd", "--bantime", "3").returncode == ExitCode.OK
    [owner] = [o for b in lab.central.call("list")["bans"] if b["prefix"] == f"{E}/32" for o in b["owners"]]
    lab.wait_firewall({B, C, D, E}, "E at the firewall")
    lab.edges["web2"].kill()
    lab.wait_firewall({B, C, D}, "E withdrawn by the central at its expiry", timeout=15)
    late = time.time() - owner["expires"]
    assert -0.5 < late < 5, f"withdrawn {late:.1f} s after the expiry the edge sent"


def test_060_refusals_change_nothing(lab: Lab) -> None:
    before = lab.owners()
    # no token: the API answers 401 and reads nothing
    out = lab.topo.run("server", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert",
                                  str(lab.tls / "ca.pem"), "-X", "POST", "-d", json.dumps({"prefix": "203.0.113.30"}),
                                  f"{URL}/v1/ban"], check=False).stdout
    assert out == "401"
    # a revoked token: removed from the config, SIGHUP, refused from the next request
    assert lab.remote("old", "status").returncode == ExitCode.OK
    lab.central.config.write_text(lab.central.config.read_text().replace(REVOKED, ""))
    os.kill(lab.central.processes[-1].pid, signal.SIGHUP)
    wait_until(lambda: lab.remote("old", "status").returncode == ExitCode.REFUSED, SETTLE, "token revoked")
    cases = {
        "wrong CA": (lab.remote("web1", "ban", "203.0.113.31", ca="other-ca.pem"), ExitCode.UNAVAILABLE, "TLS"),
        "another's claim": (lab.remote("web2", "unban", C, "--jail", "web1/sshd"), ExitCode.REFUSED,
                            "only on its own claims"),
        "over quota": (lab.remote("small", "ban", "203.0.113.32"), ExitCode.OK, ""),
        "over quota 2": (lab.remote("small", "ban", "203.0.113.33"), ExitCode.LIMIT, "quota of 1"),
        "protected": (lab.remote("web1", "ban", HOSTS["server"]["4"]), ExitCode.REFUSED, "protected"),
        "revoked": (lab.remote("old", "ban", "203.0.113.34"), ExitCode.REFUSED, "no valid token"),
    }
    for what, (result, code, words) in cases.items():
        assert result.returncode == code and words in result.stderr, f"{what}: {result.stdout}{result.stderr}"
    assert lab.owners() == {**before, "203.0.113.32": ["small/cli"]}
    assert lab.remote("ops", "withdraw", "203.0.113.32").returncode == ExitCode.OK
    lab.wait_firewall({B, C, D}, "nothing else at the firewall")


def test_070_metrics_on_the_localhost_listener(lab: Lab) -> None:
    text = lab.topo.run("injector", ["curl", "-sf", "http://127.0.0.1:9180/metrics"]).stdout
    metrics = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert metrics['f2b_bgp_routes{backend="exabgp",state="active"}'] == 3
    assert metrics['f2b_bgp_routes{backend="exabgp",state="pending"}'] == 0
    assert metrics['f2b_bgp_claims{jail="web1/sshd"}'] == 1 and metrics['f2b_bgp_claims{jail="web2/sshd"}'] == 1
    assert metrics[f'f2b_bgp_peer_up{{backend="exabgp",peer="{HOSTS["firewall"]["4"]}",state="up"}}'] == 1
    assert metrics['f2b_bgp_events_total{event="refuse",reason="protected"}'] >= 1
    assert metrics['f2b_bgp_events_total{event="api-error",reason="limit"}'] >= 1
    assert metrics['f2b_bgp_events_total{event="expire",reason=""}'] >= 1
    assert metrics['f2b_bgp_backend_ack_seconds_count{backend="exabgp"}'] >= 1
    assert metrics["f2b_bgp_store_writable"] == 1


def test_080_a_real_fail2ban_on_an_edge(lab: Lab) -> None:
    if lab.fail2ban is None:
        pytest.skip(fail2ban_missing())
    append(lab.fail2ban.workdir / "routeros.log", [routeros_line(F)])
    lab.wait_firewall({B, C, D, F}, "fail2ban's ban on web1 at the firewall")
    assert lab.owners()[F] == ["web1/routeros"]
    lab.fail2ban.client("set", "routeros", "unbanip", F)
    lab.wait_firewall({B, C, D}, "fail2ban's unban withdrawn at the firewall")
