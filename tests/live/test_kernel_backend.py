"""The daemon with the kernel backend, live in the injector namespace: exit codes, owners, expiry, restart, drift.

The firewall side (FRR injector redistributing to a receiver) is in test_kernel_frr.py.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import pytest

from f2b_bgp.errors import ExitCode
from tests.lab.f2bbgp import F2bBgp, lab_config
from tests.lab.netns import Topology
from tests.lab.peers import kernel_routes
from tests.lab.wait import wait_until

ATTACKER4, ATTACKER6 = "203.0.113.66", "2001:db8:203::66"
CONFIG = lab_config(daemon="reconcile_interval = 1", guards="max_routes = 5\nmax_rate = 100")


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    with Topology() as topo:
        yield topo


@pytest.fixture
def daemon(topology: Topology) -> Iterator[F2bBgp]:
    """A fresh daemon (empty state) on the injector; --discard: its start removes routes of ours left by the last one."""
    with F2bBgp(topology.ns("injector"), CONFIG, serve_args=("--discard",)) as d:
        yield d


def ours(topology: Topology) -> dict[str, str]:
    """Routes of our protocol number on the injector: prefix -> type."""
    return {p: r.type for p, r in kernel_routes(topology, "injector").items() if r.protocol == "201"}


def ip(topology: Topology, *argv: str) -> None:
    topology.run("injector", ["ip", *argv])


def test_010_ban_writes_a_blackhole_of_our_protocol_v4_and_v6(daemon: F2bBgp, topology: Topology) -> None:
    for address in (ATTACKER4, ATTACKER6):
        result = daemon.cli("ban", address, "--jail", "sshd", "--reason", "test")
        assert result.returncode == ExitCode.OK, result.stderr
        assert " active until " in result.stdout
    assert ours(topology) == {f"{ATTACKER4}/32": "blackhole", f"{ATTACKER6}/128": "blackhole"}


def test_020_refusals_exit_4_and_touch_nothing(daemon: F2bBgp, topology: Topology) -> None:
    assert daemon.cli("ban", ATTACKER4).returncode == ExitCode.OK
    for hostile, why in [("198.51.100.9", "protected: 198.51.100.0/24 (our network)"),
                         ("203.0.113.0/24", "length:"), ("10.1", "short form"), ("$(reboot)", "shell metacharacter"),
                         ("::ffff:198.51.100.9", "protected"), ("fc00::1", "special"), ("fe80::1", "connected"), ("198.51.100.2", "protected")]:
        result = daemon.cli("ban", hostile)
        assert result.returncode == ExitCode.REFUSED, (hostile, result.stderr)
        assert why in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert set(ours(topology)) == {f"{ATTACKER4}/32"}


def test_030_limit_exits_7_and_keeps_what_is_in_place(daemon: F2bBgp, topology: Topology) -> None:
    for i in range(5):
        assert daemon.cli("ban", f"203.0.113.{10 + i}").returncode == ExitCode.OK
    result = daemon.cli("ban", "203.0.113.99")
    assert result.returncode == ExitCode.LIMIT and "max-routes" in result.stderr
    assert len(ours(topology)) == 5


def test_040_owners_unban_and_withdraw_are_idempotent(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4, "--jail", "sshd")
    daemon.cli("ban", ATTACKER4, "--jail", "nginx")
    assert "still banned by nginx" in daemon.cli("unban", ATTACKER4, "--jail", "sshd").stdout
    assert daemon.cli("unban", ATTACKER4, "--jail", "sshd").returncode == ExitCode.OK
    assert ours(topology) == {f"{ATTACKER4}/32": "blackhole"}
    assert "removed nginx" in daemon.cli("withdraw", ATTACKER4).stdout
    assert daemon.cli("withdraw", ATTACKER4).returncode == ExitCode.OK
    assert ours(topology) == {}


def test_045_flush_one_jail_then_all(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4, "--jail", "sshd")
    daemon.cli("ban", ATTACKER6, "--jail", "sshd")
    daemon.cli("ban", ATTACKER6, "--jail", "nginx")
    daemon.cli("ban", "203.0.113.67", "--jail", "nginx")
    assert daemon.cli("flush", "--jail", "sshd").stdout.strip() == "removed 2 ban(s) of sshd"
    assert set(ours(topology)) == {f"{ATTACKER6}/128", "203.0.113.67/32"}  # still claimed by nginx
    assert daemon.cli("flush").stdout.strip() == "removed 2 ban(s)"
    assert ours(topology) == {}


def test_050_list_and_show(daemon: F2bBgp) -> None:
    daemon.cli("ban", ATTACKER6, "--jail", "sshd", "--reason", "brute force")
    listed = json.loads(daemon.cli("list", "--json").stdout)
    assert [(b["prefix"], b["state"], b["owners"][0]["jail"]) for b in listed] == [(f"{ATTACKER6}/128", "active", "sshd")]
    assert "PREFIX" in daemon.cli("list").stdout
    shown = daemon.cli("show", ATTACKER6).stdout
    assert "blackholed" in shown and "banned by sshd" in shown and "brute force" in shown
    refused = daemon.cli("show", "198.51.100.1").stdout
    assert "not blackholed" in refused and "refused by protected" in refused


def test_055_list_by_jail_and_the_route_expiry_are_true(daemon: F2bBgp) -> None:
    daemon.cli("ban", ATTACKER4, "--jail", "j3", "--bantime", "600")
    longer = daemon.cli("ban", ATTACKER4, "--jail", "j4", "--bantime", "60").stdout
    assert "active until" in longer and "(this claim by j4 until" in longer
    listed = json.loads(daemon.cli("list", "--jail", "j4", "--json").stdout)
    assert [o["jail"] for o in listed[0]["owners"]] == ["j4"]
    old = daemon.cli("ban", "203.0.113.70", "--started", "1000", "--bantime", "60")
    assert old.returncode == ExitCode.OK and "not banned: this ban ended at 1970-01-01" in old.stdout


def test_060_expiry_withdraws_without_an_unban(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4, "--bantime", "2")
    daemon.cli("ban", ATTACKER6, "--bantime", "600")
    wait_until(lambda: f"{ATTACKER4}/32" not in ours(topology), 10, "expiry of the 2 s ban")
    assert set(ours(topology)) == {f"{ATTACKER6}/128"}


def test_070_restart_and_kill_9_keep_state_and_reconcile(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4)
    daemon.cli("ban", ATTACKER6)
    daemon.kill(signal.SIGKILL)
    ip(topology, "route", "del", f"{ATTACKER4}/32", "proto", "201")  # lost while down
    ip(topology, "route", "add", "blackhole", "203.0.113.77/32", "proto", "201")  # a stale one of ours
    ip(topology, "route", "add", "blackhole", "203.0.113.78/32")  # the admin's own: not ours
    try:
        daemon.start()
        expected = {f"{ATTACKER4}/32", f"{ATTACKER6}/128"}
        wait_until(lambda: set(ours(topology)) == expected, 10, "reconciled kernel routes")
        assert kernel_routes(topology, "injector")["203.0.113.78/32"].type == "blackhole"
        assert json.loads(daemon.cli("status", "--json").stdout)["routes"] == {"active": 2, "pending": 0}
    finally:
        ip(topology, "route", "del", "203.0.113.78/32")


def test_080_drift_is_repaired_by_sync(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4)
    ip(topology, "route", "del", f"{ATTACKER4}/32", "proto", "201")
    result = daemon.cli("sync")
    assert result.returncode == ExitCode.OK and "missing 1" in result.stdout
    assert set(ours(topology)) == {f"{ATTACKER4}/32"}


def test_085_an_emptied_store_withdraws_nothing_until_told(daemon: F2bBgp, topology: Topology) -> None:
    prefixes = {f"203.0.113.{i}/32" for i in range(100, 105)}
    for prefix in prefixes:
        assert daemon.cli("ban", prefix).returncode == ExitCode.OK
    daemon.stop()
    (daemon.workdir / "state.db").write_bytes(b"")  # truncated to 0 bytes
    for suffix in ("-wal", "-shm"):
        (daemon.workdir / f"state.db{suffix}").unlink(missing_ok=True)
    daemon.serve_args = ()
    with pytest.raises(AssertionError, match="is new or empty but the backends hold 5 routes of ours"):
        daemon.start()
    assert set(ours(topology)) == prefixes
    daemon.serve_args = ("--adopt",)
    daemon.start()
    listed = json.loads(daemon.cli("list", "--json").stdout)
    assert {b["prefix"] for b in listed} == prefixes and {b["owners"][0]["jail"] for b in listed} == {"adopted"}


def test_090_stopping_the_daemon_leaves_routes_and_the_cli_says_unavailable(daemon: F2bBgp, topology: Topology) -> None:
    daemon.cli("ban", ATTACKER4)
    daemon.stop()
    assert set(ours(topology)) == {f"{ATTACKER4}/32"}
    result = daemon.cli("status")
    assert result.returncode == ExitCode.UNAVAILABLE and "daemon not reachable" in result.stderr
