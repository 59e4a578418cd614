"""fail2ban/action.d/bgp-blackhole.py against a fake daemon socket (a unit test: the live one is tests/live/).

The action is loaded the way fail2ban loads it (Actions.add with the file path) into
fail2ban's own DummyJail, so ban/unban receive fail2ban's real ActionInfo.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.fail2ban import SHIPPED, fail2ban_importable, fail2ban_missing
from tests.lab.wait import wait_until

ACTION = SHIPPED / "action.d" / "bgp-blackhole.py"
pytestmark = pytest.mark.skipif(bool(fail2ban_missing()), reason=fail2ban_missing() or "fail2ban present")

Reply = Callable[[dict[str, Any]], dict[str, Any] | None]  # None: never answer


def ok(request: dict[str, Any]) -> dict[str, Any]:
    if request["op"] == "ban":
        return {"ok": True, "prefix": request["prefix"], "state": "active", "expires": None, "new": True}
    if request["op"] == "flush":
        return {"ok": True, "removed": 2}
    return {"ok": True, "version": "test"}


class FakeDaemon:
    """A JSON-lines AF_UNIX server that records requests and answers with `reply`."""

    def __init__(self, path: Path, reply: Reply = ok, close_after_each: bool = False) -> None:
        self.path, self.reply, self.close_after_each = path, reply, close_after_each
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.server.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.running:
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            for line in reader:
                request = json.loads(line)
                self.requests.append(request)
                answer = self.reply(request)
                if answer is None:
                    time.sleep(2)  # a hung daemon (the client's timeout is shorter)
                    return
                conn.sendall(json.dumps(answer).encode() + b"\n")
                if self.close_after_each:
                    return

    def close(self) -> None:
        self.running = False
        self.server.close()
        self.thread.join(5)
        os.unlink(self.path)


@pytest.fixture
def fail2ban() -> Iterator[Any]:
    with fail2ban_importable():
        import fail2ban.tests.dummyjail as dummyjail

        yield dummyjail


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "api.sock"


@pytest.fixture
def daemon(sock: Path) -> Iterator[FakeDaemon]:
    fake = FakeDaemon(sock)
    yield fake
    fake.close()


def make_action(fail2ban: Any, sock: Path, **opts: str) -> tuple[Any, Any]:
    """A DummyJail "sshd" with our action added by file path, options as fail2ban passes them (strings).

    The queue is beside the socket (tmp_path), so a test sees what was queued."""
    jail = fail2ban.DummyJail(name="sshd")
    jail.actions.add("bgp-blackhole", str(ACTION), {"socket": str(sock), "queue": str(sock.with_name("q")), **opts})
    return jail, jail.actions["bgp-blackhole"]


def queued(sock: Path) -> list[str]:
    path = sock.with_name("q")
    return path.read_text().splitlines() if path.exists() else []


def requests_of(daemon: FakeDaemon, op: str, count: int) -> list[dict[str, Any]]:
    """Wait until the daemon received `count` requests `op` (they are pipelined), then return them."""
    return wait_until(lambda: (lambda r: r if len(r) >= count else None)([q for q in daemon.requests if q["op"] == op]),
                      5, f"{count} {op} request(s)")


def info(ip: str, **extra: Any) -> dict[str, Any]:
    return {"ip": ip, "family": "inet6" if ":" in ip else "inet4", "time": 1_700_000_000.5, "bantime": 600,
            "failures": 3, "restored": 0, **extra}


def test_bans_through_fail2ban_reach_the_daemon_on_one_connection(fail2ban: Any, sock: Path, daemon: FakeDaemon) -> None:
    jail, _ = make_action(fail2ban, sock, port="ssh", protocol="tcp", chain="INPUT")  # action_'s extras
    before = time.time()
    assert jail.actions.addBannedIP(["192.0.2.1", "2001:db8::1"]) == 2
    bans = requests_of(daemon, "ban", 2)
    assert [(r["prefix"], r["jail"], r["bantime"]) for r in bans] == [("192.0.2.1", "sshd", 600), ("2001:db8::1", "sshd", 600)]
    assert all(before - 1 <= r["started"] <= time.time() for r in bans)
    assert daemon.connections == 1
    jail.actions.removeBannedIP("192.0.2.1")
    assert requests_of(daemon, "unban", 1) == [{"op": "unban", "prefix": "192.0.2.1", "jail": "sshd"}]
    assert queued(sock) == []


def test_restored_ban_keeps_its_original_start_and_permanent_is_minus_1(fail2ban: Any, sock: Path, daemon: FakeDaemon) -> None:
    _, action = make_action(fail2ban, sock)
    action.ban(info("192.0.2.1", restored=1))
    action.ban(info("2001:db8::1", bantime=-1))
    first, second = requests_of(daemon, "ban", 2)
    assert first["started"] == 1_700_000_000.5 and first["bantime"] == 600 and "restored=1" in first["reason"]
    assert second["bantime"] == -1


def test_prolong_sends_the_longer_bantime(fail2ban: Any, sock: Path, daemon: FakeDaemon) -> None:
    _, action = make_action(fail2ban, sock)
    assert action._prolongable  # fail2ban's own check before calling prolong
    action.prolong(info("192.0.2.1", bantime=1200))
    assert requests_of(daemon, "ban", 1)[-1]["bantime"] == 1200


def test_values_from_log_lines_are_never_sent(fail2ban: Any, sock: Path, daemon: FakeDaemon) -> None:
    _, action = make_action(fail2ban, sock)
    hostile = "x'; touch /tmp/PWNED; echo $(id) `id` \"q\"\nroot"
    action.ban(info("192.0.2.1", **{"F-USER": hostile, "matches": hostile}))
    assert set(requests_of(daemon, "ban", 1)[-1]) == {"op", "prefix", "jail", "bantime", "started", "reason"}
    assert "PWNED" not in json.dumps(daemon.requests)


def test_pending_is_success_refused_is_logged_with_the_reason(fail2ban: Any, sock: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    def reply(request: dict[str, Any]) -> dict[str, Any]:
        if request["prefix"] == "192.0.2.1":
            return {"ok": True, "prefix": "192.0.2.1/32", "state": "pending", "expires": None, "new": True}
        return {"ok": False, "code": "refused", "error": "protected: 198.51.100.0/24 (our network)", "hint": "h"}

    fake = FakeDaemon(sock, reply)
    try:
        _, action = make_action(fail2ban, sock)
        with caplog.at_level("WARNING", logger="fail2ban"):
            action.ban(info("192.0.2.1"))
            action.ban(info("198.51.100.7"))
            action.stop()  # waits for the answers in flight
        assert "192.0.2.1/32 stored, backend not acknowledged yet" in caplog.text
        assert "ban 198.51.100.7 refused: refused: protected: 198.51.100.0/24 (our network) (hint: h)" in caplog.text
        assert queued(sock) == []  # a refusal is an answer: nothing to queue
    finally:
        fake.close()


def test_a_connection_the_daemon_closes_loses_nothing_and_keeps_the_order(fail2ban: Any, sock: Path) -> None:
    fake = FakeDaemon(sock, close_after_each=True)  # as if the daemon restarted between bans
    try:
        _, action = make_action(fail2ban, sock)
        ips = ["192.0.2.1", "192.0.2.2", "2001:db8::1"]
        for ip in ips:
            action.ban(info(ip))
        action.stop()
        sent = [r["prefix"] for r in fake.requests]
        # each ban reached the daemon (answered) or was queued (unanswered: maybe applied, idempotent)
        assert sent[0] == ips[0]
        assert ips == sorted(set(sent + [line.split()[2] for line in queued(sock)]), key=ips.index)
        assert [line.split()[2] for line in queued(sock)] == ips[len(ips) - len(queued(sock)):]
    finally:
        fake.close()


def test_daemon_down_logs_clearly_and_queues_in_order(fail2ban: Any, sock: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, action = make_action(fail2ban, sock)  # nothing listens on sock
    with caplog.at_level("WARNING", logger="fail2ban"):
        action.start()  # must not raise: the jail starts anyway
        action.ban(info("192.0.2.1"))
        action.unban(info("192.0.2.1"))
        action.ban(info("2001:db8::1", restored=1, bantime=-1))
    assert f"f2b-bgp daemon not reachable at {sock}" in caplog.text and "f2b-bgp serve" in caplog.text
    assert queued(sock) == ["f2b-bgp1 ban 192.0.2.1 1700000000.500000 600 3 0 sshd",
                            "f2b-bgp1 unban 192.0.2.1 0.000000 0 0 0 sshd",
                            "f2b-bgp1 ban 2001:db8::1 1700000000.500000 -1 3 1 sshd"]


def test_an_unwritable_queue_fails_the_ban_visibly(fail2ban: Any, sock: Path) -> None:
    _, action = make_action(fail2ban, sock, queue=str(sock.with_name("missing-dir") / "q"))
    with pytest.raises(Exception, match="cannot append to the queue .*missing-dir/q.*nothing was handed to the daemon"):
        action.ban(info("192.0.2.1"))


def test_a_hung_daemon_costs_at_most_the_timeout_and_its_requests_are_queued(fail2ban: Any, sock: Path) -> None:
    fake = FakeDaemon(sock, reply=lambda request: None)
    try:
        _, action = make_action(fail2ban, sock, timeout="0.3")
        started = time.monotonic()
        action.ban(info("192.0.2.1"))  # written, not answered
        assert time.monotonic() - started < 0.3
        action.stop()
        assert time.monotonic() - started < 1.5  # the timeout, once
        assert [line.split()[2] for line in queued(sock)] == ["192.0.2.1"]
    finally:
        fake.close()


def test_queueing_goes_on_until_the_daemon_applied_the_queue(fail2ban: Any, sock: Path) -> None:
    _, action = make_action(fail2ban, sock, retry="0")  # ask the daemon at every request while queueing
    action.ban(info("192.0.2.1"))  # daemon down: queued
    depth = {"n": 1}
    fake = FakeDaemon(sock, lambda r: {"ok": True, "queue": {"depth": depth["n"]}} if r["op"] == "status" else ok(r))
    try:
        action.unban(info("192.0.2.1"))  # the daemon is back but has not applied the queue: queued behind it
        assert [r["op"] for r in fake.requests] == ["status"] and len(queued(sock)) == 2
        depth["n"] = 0
        action.ban(info("192.0.2.2"))  # queue applied: direct again
        assert [r["op"] for r in requests_of(fake, "ban", 1)] == ["ban"] and len(queued(sock)) == 2
    finally:
        fake.close()


def test_flush_keeps_routes_at_stop_and_withdraws_at_unban_all(fail2ban: Any, sock: Path, daemon: FakeDaemon) -> None:
    jail, action = make_action(fail2ban, sock)
    jail.actions.addBannedIP("192.0.2.1")
    jail.actions.active = False  # fail2ban stopping the jail: the actions thread is no longer active
    assert action.flush() is True
    requests_of(daemon, "ban", 1)
    assert [r["op"] for r in daemon.requests] == ["ban"]
    jail.actions.active = True  # "fail2ban-client unban --all" while running
    assert jail.actions.removeBannedIP(None) == 1  # one ticket flushed from fail2ban's list
    assert daemon.requests[-1] == {"op": "flush", "jail": "sshd"}
    assert [r["op"] for r in daemon.requests] == ["ban", "flush"]  # flush() True: no one-by-one unban


def test_withdraw_on_stop_flushes_at_stop(fail2ban: Any, sock: Path, daemon: FakeDaemon) -> None:
    jail, action = make_action(fail2ban, sock, withdraw_on_stop="true")
    jail.actions.active = False
    assert action.flush() is True
    assert daemon.requests == [{"op": "flush", "jail": "sshd"}]


def test_reload_keeps_the_action_and_applies_new_options(fail2ban: Any, sock: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.sock"
    fake = FakeDaemon(other)
    try:
        jail, action = make_action(fail2ban, sock)
        jail.actions.reload(begin=True)
        jail.actions.add("bgp-blackhole", str(ACTION), {"socket": str(other)}, reload=True)
        jail.actions.reload(begin=False)
        assert jail.actions["bgp-blackhole"] is action  # not dropped as obsolete
        action.ban(info("192.0.2.1"))
        assert [r["prefix"] for r in requests_of(fake, "ban", 1)] == ["192.0.2.1"]
    finally:
        fake.close()


def test_bad_timeout_or_retry_is_refused_at_load(fail2ban: Any, sock: Path) -> None:
    with pytest.raises(Exception, match="timeout must be a positive number"):
        make_action(fail2ban, sock, timeout="0")
    with pytest.raises(Exception, match="retry must be 0..3600 seconds"):
        make_action(fail2ban, sock, retry="-1")
