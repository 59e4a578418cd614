"""The daemon with the kernel backend, live in a namespace: CLI exit codes, restart, kill -9, expiry, drift.

The firewall side (FRR injector redistributing to a receiver) is in test_kernel_frr.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode
from .daemon_env import F2bBgpDaemon, Namespace, kernel_routes, wait_until

ATTACKER4, ATTACKER6 = "203.0.113.66", "2001:db8:203::66"
CONFIG = """
[daemon]
socket = "{dir}/api.sock"
database = "{dir}/state.db"
retry_interval = 0.2
reconcile_interval = 1
[guards]
protected = [{{ prefix = "198.51.100.0/24", name = "our network" }}]
allow_special = ["203.0.113.0/24", "2001:db8:203::/48"]
max_routes = 5
max_rate = 100
"""


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[F2bBgpDaemon]:
    (tmp_path / "c.toml").write_text(CONFIG.format(dir=tmp_path))
    with Namespace("kb") as ns:
        ns.run(["ip", "addr", "add", "198.51.100.2/29", "dev", "lo"])
        with F2bBgpDaemon(ns, tmp_path / "c.toml", tmp_path / "api.sock", tmp_path / "daemon.log") as d:
            yield d


def cli(d: F2bBgpDaemon, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "f2b_bgp", "--socket", str(d.socket), *args],
                          capture_output=True, text=True, timeout=30)


def test_010_ban_writes_a_blackhole_of_our_protocol_v4_and_v6(daemon: F2bBgpDaemon) -> None:
    for address in (ATTACKER4, ATTACKER6):
        result = cli(daemon, "ban", address, "--jail", "sshd", "--reason", "test")
        assert result.returncode == ExitCode.OK, result.stderr
        assert " active until " in result.stdout
    routes = kernel_routes(daemon.ns, protocol=201)
    assert routes == {f"{ATTACKER4}/32": "blackhole", f"{ATTACKER6}/128": "blackhole"}


def test_020_refusals_exit_4_and_touch_nothing(daemon: F2bBgpDaemon) -> None:
    assert cli(daemon, "ban", ATTACKER4).returncode == ExitCode.OK
    for hostile, why in [("198.51.100.9", "protected: 198.51.100.0/24 (our network)"),
                         ("203.0.113.0/24", "length:"), ("10.1", "short form"), ("$(reboot)", "shell metacharacter"),
                         ("::ffff:198.51.100.9", "protected"), ("fe80::1", "special")]:
        result = cli(daemon, "ban", hostile)
        assert result.returncode == ExitCode.REFUSED, (hostile, result.stderr)
        assert why in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert set(kernel_routes(daemon.ns, protocol=201)) == {f"{ATTACKER4}/32"}


def test_030_limit_exits_7_and_keeps_what_is_in_place(daemon: F2bBgpDaemon) -> None:
    for i in range(5):
        assert cli(daemon, "ban", f"203.0.113.{10 + i}").returncode == ExitCode.OK
    result = cli(daemon, "ban", "203.0.113.99")
    assert result.returncode == ExitCode.LIMIT and "max-routes" in result.stderr
    assert len(kernel_routes(daemon.ns, protocol=201)) == 5


def test_040_owners_unban_and_withdraw_are_idempotent(daemon: F2bBgpDaemon) -> None:
    cli(daemon, "ban", ATTACKER4, "--jail", "sshd")
    cli(daemon, "ban", ATTACKER4, "--jail", "nginx")
    assert "still banned by nginx" in cli(daemon, "unban", ATTACKER4, "--jail", "sshd").stdout
    assert cli(daemon, "unban", ATTACKER4, "--jail", "sshd").returncode == ExitCode.OK
    assert kernel_routes(daemon.ns, protocol=201) == {f"{ATTACKER4}/32": "blackhole"}
    assert "removed nginx" in cli(daemon, "withdraw", ATTACKER4).stdout
    assert cli(daemon, "withdraw", ATTACKER4).returncode == ExitCode.OK
    assert kernel_routes(daemon.ns, protocol=201) == {}


def test_050_list_and_show(daemon: F2bBgpDaemon) -> None:
    cli(daemon, "ban", ATTACKER6, "--jail", "sshd", "--reason", "brute force")
    listed = json.loads(cli(daemon, "list", "--json").stdout)
    assert [(b["prefix"], b["state"], b["owners"][0]["jail"]) for b in listed] == [(f"{ATTACKER6}/128", "active", "sshd")]
    assert "PREFIX" in cli(daemon, "list").stdout
    shown = cli(daemon, "show", ATTACKER6).stdout
    assert "blackholed" in shown and "banned by sshd" in shown and "brute force" in shown
    refused = cli(daemon, "show", "198.51.100.1").stdout
    assert "not blackholed" in refused and "refused by protected" in refused


def test_060_expiry_withdraws_without_an_unban(daemon: F2bBgpDaemon) -> None:
    cli(daemon, "ban", ATTACKER4, "--bantime", "2")
    cli(daemon, "ban", ATTACKER6, "--bantime", "600")
    wait_until(lambda: f"{ATTACKER4}/32" not in kernel_routes(daemon.ns, protocol=201), 10, "expiry of the 2 s ban")
    assert set(kernel_routes(daemon.ns, protocol=201)) == {f"{ATTACKER6}/128"}


def test_070_restart_and_kill_9_keep_state_and_reconcile(daemon: F2bBgpDaemon) -> None:
    cli(daemon, "ban", ATTACKER4)
    cli(daemon, "ban", ATTACKER6)
    daemon.stop(signal.SIGKILL)
    daemon.ns.run(["ip", "route", "del", f"{ATTACKER4}/32", "proto", "201"])  # lost while down
    daemon.ns.run(["ip", "route", "add", "blackhole", "203.0.113.77/32", "proto", "201"])  # a stale one of ours
    daemon.ns.run(["ip", "route", "add", "blackhole", "203.0.113.78/32"])  # the admin's own: not ours
    daemon.start()
    expected = {f"{ATTACKER4}/32", f"{ATTACKER6}/128"}
    wait_until(lambda: set(kernel_routes(daemon.ns, protocol=201)) == expected, 10, "reconciled kernel routes")
    assert "203.0.113.78/32" in kernel_routes(daemon.ns)
    assert json.loads(cli(daemon, "status", "--json").stdout)["routes"] == {"active": 2, "pending": 0}


def test_080_drift_is_repaired_by_sync(daemon: F2bBgpDaemon) -> None:
    cli(daemon, "ban", ATTACKER4)
    daemon.ns.run(["ip", "route", "del", f"{ATTACKER4}/32", "proto", "201"])
    result = cli(daemon, "sync")
    assert result.returncode == ExitCode.OK and "missing 1" in result.stdout
    assert set(kernel_routes(daemon.ns, protocol=201)) == {f"{ATTACKER4}/32"}


def test_090_stopping_the_daemon_leaves_routes_and_the_cli_says_unavailable(daemon: F2bBgpDaemon) -> None:
    cli(daemon, "ban", ATTACKER4)
    daemon.stop(signal.SIGTERM)
    assert set(kernel_routes(daemon.ns, protocol=201)) == {f"{ATTACKER4}/32"}
    result = cli(daemon, "status")
    assert result.returncode == ExitCode.UNAVAILABLE and "daemon not reachable" in result.stderr
