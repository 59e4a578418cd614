"""`f2b-bgp doctor` on a real chain: f2b-bgp (kernel backend) + FRR injector + FRR firewall in
namespaces, and a real fail2ban-server whose jails use the shipped bgp-blackhole action.

| step | fault | doctor says | exit |
|---|---|---|---|
| 010 | none (one ban in place) | ok on every line | 0 |
| 020 | injector's FRR without `redistribute kernel` (ipv4) | fail frr-redist | 9 |
| 030 | BGP session shut down on the injector | fail bgp | 9 |
| 040 | a jail on another action | fail jails | 9 |
| 050 | the store's directory read-only | fail store | 9 |
| 060 | daemon stopped | fail daemon, fail f2b-sock | 9 |

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
from tests.lab.asserts import assert_established
from tests.lab.f2bbgp import FW1, F2bBgp
from tests.lab.fail2ban import F2B_BGP, Fail2banServer, fail2ban_missing
from tests.lab.frr import Frr
from tests.lab.netns import HOSTS, Topology
from tests.lab.peers import FrrPeer
from tests.lab.process import netns_argv
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
JAIL_LOCAL = """[DEFAULT]
backend = polling
[sshd]
logpath = {dir}/auth.log
[routeros]
logpath = {dir}/routeros.log
"""

pytestmark = pytest.mark.skipif(bool(fail2ban_missing()), reason=fail2ban_missing() or "fail2ban present")


@dataclass
class Lab:
    topo: Topology
    injector: Frr
    firewall: FrrPeer
    daemon: F2bBgp
    fail2ban: Fail2banServer

    def doctor(self) -> tuple[int, dict[str, list[dict[str, str]]]]:
        """Run doctor --json in the injector's namespace; (exit code, check name -> its results)."""
        argv = [sys.executable, "-m", "f2b_bgp", "--config", str(self.daemon.config), "doctor", "--json",
                "--vtysh-dir", str(self.injector.workdir), "--fail2ban-socket", str(self.fail2ban.sock)]
        result = subprocess.run(netns_argv(self.topo.ns("injector"), argv), capture_output=True, text=True,
                                timeout=120, cwd=REPO)
        report = json.loads(result.stdout)
        assert report["exit_code"] == result.returncode, result.stdout
        by_name: dict[str, list[dict[str, str]]] = {}
        for check in report["checks"]:
            by_name.setdefault(check["name"], []).append(check)
        return result.returncode, by_name

    def injector_conf(self, *lines: str) -> None:
        argv = ["vtysh", "--vty_socket", str(self.injector.workdir), "-c", "configure terminal"]
        for line in lines:
            argv += ["-c", line]
        subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


def levels(checks: dict[str, list[dict[str, str]]]) -> dict[str, set[str]]:
    return {name: {c["level"] for c in results} for name, results in checks.items()}


def failing(lab: Lab, name: str) -> dict[str, list[dict[str, str]]]:
    """Wait until doctor reports NAME failed (FRR and fail2ban apply changes a moment later)."""
    def failed() -> dict[str, list[dict[str, str]]] | None:
        code, checks = lab.doctor()
        return checks if "fail" in levels(checks).get(name, set()) and code == ExitCode.FAIL else None

    return wait_until(failed, 30, f"doctor: {name} fails with exit {ExitCode.FAIL.value}", interval=0.5)


def healthy(lab: Lab) -> dict[str, list[dict[str, str]]]:
    def ok() -> dict[str, list[dict[str, str]]] | None:
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
            local = f"[Init]\nsocket = {daemon.socket}\nf2bbgp = {F2B_BGP}\n"
            with Fail2banServer(JAIL_LOCAL, {"bgp-blackhole.local": local},
                                log_files=("auth.log", "routeros.log")) as f2b:
                yield Lab(topo, injector, FrrPeer(firewall), daemon, f2b)


def test_010_healthy_lab_is_ok_everywhere(lab: Lab) -> None:
    assert_established(lab.firewall, HOSTS["injector"]["4"], timeout=30)
    assert lab.daemon.cli("ban", HOSTS["attacker"]["4"], "--jail", "sshd").returncode == ExitCode.OK
    checks = healthy(lab)
    assert levels(checks) == {name: {"ok"} for name in ("config", "daemon", "store", "frr-redist", "bgp", "frr-routes",
                                                          "jails", "f2b-sock", "guards")}
    assert checks["frr-routes"][0]["detail"] == "1 active routes in zebra and BGP"
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
        assert {c["level"] for c in checks["f2b-sock"]} == {"fail"}
        assert "frr-routes" not in checks  # needs the daemon's list of routes
    finally:
        lab.daemon.processes.clear()
        lab.daemon.start()
    healthy(lab)
