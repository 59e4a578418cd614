"""doctor's checks that need no daemon: FRR's config read from the shipped injector snippet, the store's
file system, the queue and guards lines, the exit code and JSON of a report, the CLI without a daemon."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from f2b_bgp.config import load_config
from f2b_bgp.doctor import Check, Facts, Level, Options, Report, check_daemon, check_guards, check_queue, check_store, \
    last_line, redistribution, store_problem
from f2b_bgp.errors import ExitCode

REPO = Path(__file__).parents[2]
INJECTOR = (REPO / "frr-examples/injector/bgpd.conf").read_text()
EXAMPLE = REPO / "f2b_bgp/config.example.toml"


def test_shipped_injector_redistributes_both_families() -> None:
    assert redistribution(INJECTOR).level == Level.OK


@pytest.mark.parametrize("drop, missing", [("redistribute kernel route-map F2B-KERNEL6", "ipv6"),
                                           ("redistribute kernel route-map F2B-KERNEL4", "ipv4")])
def test_a_family_without_redistribute_fails(drop: str, missing: str) -> None:
    check = redistribution(INJECTOR.replace(drop, "!"))
    assert (check.level, check.detail) == (Level.FAIL, f"FRR does not redistribute kernel routes ({missing})")


def test_store_problems(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    assert store_problem(db) == ""  # not created yet: the daemon creates it
    db.write_bytes(b"")
    assert store_problem(db) == ""
    db.chmod(0o444)
    assert store_problem(db) == f"{db} is not writable by its owner"
    assert store_problem(tmp_path / "gone" / "state.db") == f"{tmp_path / 'gone'} missing"


def test_the_daemons_own_store_report_comes_first() -> None:
    """status `store` as the daemon sends it (f2b_bgp.model.StoreHealth) after a failed write."""
    status = {"store": {"writable": False, "since": 1796000000.0, "error": "database or disk is full"}}
    [check] = check_store(Options(EXAMPLE, "unused"), Facts(config=load_config(EXAMPLE), status=status))
    assert (check.level, check.detail) == (Level.FAIL, "the daemon cannot write its store: database or disk is full")


@pytest.mark.parametrize("queue, level", [(None, None), (0, Level.OK), ({"depth": 0}, Level.OK),
                                          ({"depth": 3}, Level.WARN), (2, Level.WARN),
                                          ({"bans": 1, "unbans": 1}, Level.WARN)])
def test_queue_line_only_when_the_daemon_reports_one(queue: object, level: Level | None) -> None:
    status = {} if queue is None else {"queue": queue}
    checks = check_queue(Options(EXAMPLE, "unused"), Facts(status=status))
    assert [c.level for c in checks] == ([] if level is None else [level])


def test_guards_of_the_reference_config() -> None:
    [check] = check_guards(Options(EXAMPLE, "unused"), Facts(config=load_config(EXAMPLE)))
    assert check.level == Level.OK
    assert check.detail.startswith("never blackholed: 3 protected, 1 peer, 1 host-address, 4 next-hop; the host's "
                                   "addresses; prefixes from /32 and /64; IPv6 bans widened to /64; special")


def test_guards_name_the_aggregation(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[guards]\nprotected = ['198.51.100.0/24']\nmin_length_ipv4 = 24\nmin_length_ipv6 = 48\n"
                      "[aggregation.escalation]\nenabled = true\n")
    [check] = check_guards(Options(config, "unused"), Facts(config=load_config(config)))
    assert "; prefixes from /24 and /48; 5 bans in 600 s escalate to /24, /48; special" in check.detail


def test_no_protected_prefix_warns(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[guards]\nallow_empty_protected = true\n")
    [check] = check_guards(Options(config, "unused"), Facts(config=load_config(config)))
    assert check.level == Level.WARN and check.detail.startswith("never blackholed: 2 next-hop; the host's addresses")


@pytest.mark.parametrize("levels, code", [((), ExitCode.OK), ((Level.OK, Level.OK), ExitCode.OK),
                                          ((Level.OK, Level.WARN), ExitCode.WARN),
                                          ((Level.WARN, Level.FAIL, Level.OK), ExitCode.FAIL)])
def test_exit_code_is_the_worst_check(levels: tuple[Level, ...], code: ExitCode) -> None:
    report = Report(tuple(Check(f"c{i}", level, "x") for i, level in enumerate(levels)))
    assert report.exit_code == code
    assert json.loads(report.as_json())["exit_code"] == code.value


def test_fail2ban_log_prefix_is_dropped() -> None:
    text = "2026-12-04 18:13:06,378 fail2ban  [22210]: ERROR   Failed to access socket path: /x.sock. Is fail2ban running?"
    assert last_line(text) == "Failed to access socket path: /x.sock. Is fail2ban running?"


def test_cli_without_a_daemon_fails_with_what_to_do(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "f2b_bgp", "--config", str(EXAMPLE), "--socket",
                             str(tmp_path / "none.sock"), "doctor", "--json", "--vtysh-dir", str(tmp_path),
                             "--fail2ban-socket", str(tmp_path / "f2b.sock")],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    report = json.loads(result.stdout)
    assert result.returncode == ExitCode.FAIL == report["exit_code"] and report["result"] == "fail"
    daemon = next(c for c in report["checks"] if c["name"] == "daemon")
    assert daemon["level"] == "fail" and daemon["detail"].startswith(f"daemon not reachable at {tmp_path / 'none.sock'}")
    assert daemon["fix"] == "systemctl start f2b-bgp; journalctl -u f2b-bgp"
    text = subprocess.run([sys.executable, "-m", "f2b_bgp", "--config", str(tmp_path / "missing.toml"), "doctor"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert text.returncode == ExitCode.FAIL
    assert text.stdout.splitlines()[0].startswith(f"fail  config      {tmp_path / 'missing.toml'}: cannot read")


def answering(path: Path, answers: dict[str, dict[str, object]]) -> socket.socket:
    """A stand-in daemon on PATH: one connection, each request answered from ANSWERS by its op (docs/contracts.md)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as stream:
            for line in stream:
                stream.write(json.dumps({"ok": True, **answers[json.loads(line)["op"]]}).encode() + b"\n")
                stream.flush()

    threading.Thread(target=serve, daemon=True).start()
    return server


STATUS = {"version": "0.1.0", "uptime": 5.0, "routes": {"active": 1, "pending": 0},
          "store": {"writable": True, "since": None, "error": ""}}


@pytest.mark.parametrize("backend, level, detail", [
    ({"ready": True}, Level.OK, "; backends kernel ready"),
    ({"ready": True, "unaccounted": 2}, Level.WARN, "; 2 route(s) of ours the store cannot account for"),
    ({"ready": False, "last_error": "netlink: permission denied"}, Level.FAIL, "; backend kernel: netlink: permission denied"),
])
def test_daemon_line_from_its_status(tmp_path: Path, backend: dict[str, object], level: Level, detail: str) -> None:
    path = tmp_path / "api.sock"
    with answering(path, {"status": {**STATUS, "backends": {"kernel": backend}}, "list": {"bans": []}}):
        facts = Facts()
        check = check_daemon(Options(EXAMPLE, str(path)), facts)
    assert check.level == level
    assert check.detail == "f2b-bgp 0.1.0 up 5 s, 1 route(s) active, 0 pending" + detail
    assert facts.bans == []
