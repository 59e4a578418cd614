"""`f2b-bgp doctor` on a real chain: f2b-bgp (kernel backend) + FRR injector + FRR firewall in
namespaces, and a real fail2ban-server whose jails use the shipped bgp-blackhole action.

| step | fault | doctor says | exit |
|---|---|---|---|
| 010 | none (one ban in place) | ok on every line | 0 |
| 020 | injector's FRR without `redistribute kernel` (ipv4) | fail frr-redist | 10 |
| 030 | BGP session shut down on the injector | fail bgp | 10 |
| 040 | a jail on another action | fail jails | 10 |
| 050 | the store's directory read-only | fail store | 10 |
| 060 | daemon stopped | fail daemon (the jails' queue stays ok: bans wait in it) | 10 |

The ExaBGP backend instead (kernel backend off, ExaBGP from the shipped exabgp/ files, FRR firewall):

| step | fault | doctor says | exit |
|---|---|---|---|
| 110 | none | ok on every line | 0 |
| 120 | BGP session shut down on the firewall | fail bgp | 10 |
| 130 | ExaBGP stopped | fail exabgp (bridge not connected), fail daemon (backend not ready) | 10 |

doctor runs inside the injector's namespace (`ip netns exec`), pointed at the lab's files with
--config, --vtysh-dir and --fail2ban-socket. The FRR configs are the shipped frr-examples/ files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode
from f2b_bgp.peering.regenerate import reference_config
from tests.lab.asserts import assert_established
from tests.lab.exabgp import Exabgp, with_bridge_program
from tests.lab.f2bbgp import FW1, F2bBgp, exabgp_tables, lab_config
from tests.lab.fail2ban import Fail2banServer, fail2ban_missing
from tests.lab.frr import Frr
from tests.lab.netns import HOSTS, Topology
from tests.lab.peers import FrrPeer
from tests.lab.process import make_workdir, netns_argv, remove_workdir
from tests.lab.wait import wait_until

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "frr-examples"
# the lab's daemon config (tests.lab.f2bbgp.lab_config), with the store in a directory of its own
CONFIG = f"""[daemon]
socket = "{{workdir}}/api.sock"
database = "{{workdir}}/store/state.db"
retry_interval = 0.2
[guards]
protected = [{{ prefix = "198.51.100.0/24", name = "our network" }}, "2001:db8:1::/64", "2001:db8:2::/64"]
allow_special = ["203.0.113.0/24", "2001:db8:203::/48"]
[bgp]
local_as = 65001
router_id = "198.51.100.2"
{FW1}"""
EXABGP_CONFIG = lab_config(rest=exabgp_tables(kernel=False))
JAIL_LOCAL = """[DEFAULT]
backend = polling
[sshd]
logpath = {dir}/auth.log
[routeros]
logpath = {dir}/routeros.log
"""

pytestmark = pytest.mark.skipif(bool(fail2ban_missing()), reason=fail2ban_missing() or "fail2ban present")


Checks = dict[str, list[dict[str, str]]]


@dataclass
class Lab:
    topo: Topology
    injector: Frr | None  # FRR on the injector (kernel backend)
    firewall: FrrPeer
    daemon: F2bBgp
    fail2ban: Fail2banServer
    exabgp: Exabgp | None = None

    def doctor(self) -> tuple[int, Checks]:
        """Run doctor --json in the injector's namespace; (exit code, check name -> its results)."""
        vtysh = ["--vtysh-dir", str(self.injector.workdir)] if self.injector else []
        argv = [sys.executable, "-m", "f2b_bgp", "--config", str(self.daemon.config), "doctor", "--json", *vtysh,
                "--fail2ban-socket", str(self.fail2ban.sock)]
        result = subprocess.run(netns_argv(self.topo.ns("injector"), argv), capture_output=True, text=True,
                                timeout=120, cwd=REPO)
        report = json.loads(result.stdout)
        assert report["exit_code"] == result.returncode, result.stdout
        by_name: Checks = {}
        for check in report["checks"]:
            by_name.setdefault(check["name"], []).append(check)
        return result.returncode, by_name

    def injector_conf(self, *lines: str) -> None:
        assert self.injector is not None
        vtysh_conf(self.injector, lines)


def vtysh_conf(frr: Frr, lines: tuple[str, ...]) -> None:
    """Configuration commands, as an operator types them after `configure terminal`."""
    argv = ["vtysh", "--vty_socket", str(frr.workdir), "-c", "configure terminal"]
    for line in lines:
        argv += ["-c", line]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


def levels(checks: Checks) -> dict[str, set[str]]:
    return {name: {c["level"] for c in results} for name, results in checks.items()}


def failing(lab: Lab, name: str) -> Checks:
    """Wait until doctor reports NAME failed (FRR and fail2ban apply changes a moment later)."""
    def failed() -> Checks | None:
        code, checks = lab.doctor()
        return checks if "fail" in levels(checks).get(name, set()) and code == ExitCode.FAIL else None

    return wait_until(failed, 30, f"doctor: {name} fails with exit {ExitCode.FAIL.value}", interval=0.5)


def healthy(lab: Lab) -> Checks:
    def ok() -> Checks | None:
        code, checks = lab.doctor()
        return checks if code == ExitCode.OK else None

    return wait_until(ok, 60, "doctor: every check ok, exit 0", interval=0.5)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    firewall_files = {d: EXAMPLES / "firewall" / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")}
    injector_files = {d: EXAMPLES / "injector" / f"{d}.conf" for d in ("zebra", "bgpd")}
    with Topology() as topo, Frr(topo.ns("firewall"), firewall_files) as firewall, \
            Frr(topo.ns("injector"), injector_files) as injector:
        daemon = F2bBgp(topo.ns("injector"), CONFIG)
        (daemon.workdir / "store").mkdir()
        with daemon:
            local = f"[Init]\nqueue = {daemon.workdir}/store/fail2ban.queue\n"
            with Fail2banServer(JAIL_LOCAL, {"bgp-blackhole.local": local},
                                log_files=("auth.log", "routeros.log")) as f2b:
                yield Lab(topo, injector, FrrPeer(firewall), daemon, f2b)


@pytest.fixture(scope="module")
def exabgp_lab() -> Iterator[Lab]:
    firewall_files = {d: EXAMPLES / "firewall" / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")}
    workdir = make_workdir("doctor-exabgp")
    try:
        with Topology() as topo, Frr(topo.ns("firewall"), firewall_files) as firewall, \
                F2bBgp(topo.ns("injector"), EXABGP_CONFIG) as daemon:
            conf = with_bridge_program(REPO / "exabgp/exabgp.conf", workdir, str(reference_config().exabgp.bridge_program))
            env = {"exabgp_daemon_user": "root", "exabgp_log_destination": "stdout",
                   "F2B_BGP_BRIDGE_SOCKET": str(daemon.workdir / "exabgp.sock")}
            local = f"[Init]\nqueue = {daemon.workdir}/fail2ban.queue\n"
            with Exabgp(topo.ns("injector"), conf, listen=HOSTS["injector"]["4"], workdir=workdir, env=env,
                        env_file=REPO / "exabgp/exabgp.env") as exabgp, \
                    Fail2banServer(JAIL_LOCAL, {"bgp-blackhole.local": local},
                                   log_files=("auth.log", "routeros.log")) as f2b:
                yield Lab(topo, None, FrrPeer(firewall), daemon, f2b, exabgp)
    finally:
        remove_workdir(workdir)


def test_010_healthy_lab_is_ok_everywhere(lab: Lab) -> None:
    assert_established(lab.firewall, HOSTS["injector"]["4"], timeout=30)
    assert lab.daemon.cli("ban", HOSTS["attacker"]["4"], "--jail", "sshd").returncode == ExitCode.OK
    checks = healthy(lab)
    assert levels(checks) == {name: {"ok"} for name in ("config", "daemon", "store", "frr-redist", "bgp", "frr-routes",
                                                          "jails", "f2b-queue", "queue", "guards")}
    assert checks["frr-routes"][0]["detail"] == "1 active route(s) in zebra and BGP"
    assert checks["jails"][0]["detail"] == "on bgp-blackhole: routeros, sshd"


def test_020_frr_without_redistribute_kernel(lab: Lab) -> None:
    lab.injector_conf("router bgp 65001", "address-family ipv4 unicast", "no redistribute kernel")
    try:
        check = failing(lab, "frr-redist")["frr-redist"][0]
        assert check["detail"] == "FRR does not redistribute kernel routes (ipv4)"
        assert "redistribute kernel" in check["fix"]
    finally:
        lab.injector_conf("router bgp 65001", "address-family ipv4 unicast", "redistribute kernel route-map F2B-KERNEL4")
    healthy(lab)


def test_030_bgp_session_down(lab: Lab) -> None:
    lab.injector_conf("router bgp 65001", f"neighbor {HOSTS['firewall']['4']} shutdown")
    try:
        check = failing(lab, "bgp")["bgp"][0]
        assert check["detail"].startswith(f"BGP session not established: {HOSTS['firewall']['4']} ")
    finally:
        lab.injector_conf("router bgp 65001", f"no neighbor {HOSTS['firewall']['4']} shutdown")
    healthy(lab)


def test_040_a_jail_on_another_action(lab: Lab) -> None:
    lab.fail2ban.client("add", "other", "polling")
    lab.fail2ban.client("set", "other", "addaction", "dummy")
    lab.fail2ban.client("start", "other")
    try:
        check = failing(lab, "jails")["jails"]
        assert {c["level"]: c["detail"] for c in check} == {
            "fail": "jail(s) not on a bgp-blackhole action: other", "ok": "on bgp-blackhole: routeros, sshd"}
    finally:
        lab.fail2ban.client("stop", "other")
    healthy(lab)


def test_050_store_read_only(lab: Lab) -> None:
    store = lab.daemon.workdir / "store"
    subprocess.run(["mount", "--bind", str(store), str(store)], check=True, timeout=30)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(store)], check=True, timeout=30)
        check = failing(lab, "store")["store"][0]
        assert check["detail"] == f"{store} is on a read-only file system"
    finally:
        subprocess.run(["umount", str(store)], check=True, timeout=30)
    healthy(lab)


def test_060_daemon_stopped(lab: Lab) -> None:
    lab.daemon.stop()
    try:
        checks = failing(lab, "daemon")
        assert checks["daemon"][0]["detail"].startswith(f"daemon not reachable at {lab.daemon.socket}")
        assert {c["level"] for c in checks["f2b-queue"]} == {"ok"}  # bans wait in the queue meanwhile
        assert "frr-routes" not in checks  # needs the daemon's list of routes
    finally:
        lab.daemon.processes.clear()
        lab.daemon.start()
    healthy(lab)


def test_110_exabgp_healthy_lab_is_ok_everywhere(exabgp_lab: Lab) -> None:
    checks = healthy(exabgp_lab)
    assert levels(checks) == {name: {"ok"} for name in ("config", "daemon", "store", "exabgp", "bgp", "jails",
                                                          "f2b-queue", "queue", "guards")}
    assert checks["bgp"][0]["detail"] == f"1 BGP session(s) up: {HOSTS['firewall']['4']}"


def test_120_exabgp_session_down(exabgp_lab: Lab) -> None:
    shut = ("router bgp 65000", f"neighbor {HOSTS['injector']['4']} shutdown")
    vtysh_conf(exabgp_lab.firewall.daemon, shut)
    try:
        check = failing(exabgp_lab, "bgp")["bgp"][0]
        assert check["detail"].startswith(f"BGP session down: {HOSTS['firewall']['4']} down")
    finally:
        vtysh_conf(exabgp_lab.firewall.daemon, (shut[0], "no " + shut[1]))
    healthy(exabgp_lab)


def test_130_exabgp_stopped(exabgp_lab: Lab) -> None:
    assert exabgp_lab.exabgp is not None
    exabgp_lab.exabgp.stop()
    try:
        checks = failing(exabgp_lab, "exabgp")
        assert checks["exabgp"][0]["detail"] == "ExaBGP's bridge is not connected"
        assert checks["daemon"][0]["level"] == "fail" and "backend exabgp:" in checks["daemon"][0]["detail"]
    finally:
        exabgp_lab.exabgp.restart()
    healthy(exabgp_lab)
