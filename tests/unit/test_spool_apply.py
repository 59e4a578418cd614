"""The queue applied through the real service (in-memory backend), and the event view it feeds.

Queue lines go into a real file; SpoolRunner.drain() applies them through Service;
what the operator sees comes back through the API's `events` and `status` handlers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
import pytest

from f2b_bgp.api import handle_line
from f2b_bgp.cli import _duration
from f2b_bgp.spool import Entry, Spool, format_line, prepare
from f2b_bgp.spool_runner import SpoolRunner

from .memory import make

A = "203.0.113.7/32"


def ban(address: str, started: float, jail: str = "sshd", bantime: int = 600) -> bytes:
    return format_line(Entry("ban", address, started, bantime, 3, False, jail))


def unban(address: str, jail: str = "sshd") -> bytes:
    return format_line(Entry("unban", address, 0.0, 0, 0, False, jail))


def api(service, **request) -> dict:  # type: ignore[no-untyped-def]
    return asyncio.run(handle_line(service, json.dumps(request).encode()))


@pytest.fixture
def setup(tmp_path: Path):  # type: ignore[no-untyped-def]
    service, backend, clock = make(tmp_path)
    path = tmp_path / "fail2ban.queue"
    prepare(path)
    service.queue = Spool(path)
    return service, backend, clock, path, SpoolRunner(service.queue, service)


def test_queued_bans_keep_fail2bans_start_and_an_unban_after_a_ban_wins(setup) -> None:  # type: ignore[no-untyped-def]
    service, backend, clock, path, runner = setup
    with open(path, "ab") as out:
        out.write(ban("203.0.113.7", clock.now - 100) + ban("203.0.113.8", clock.now - 50) + unban("203.0.113.8"))
        out.write(ban("203.0.113.8", clock.now - 1000))  # a restored ban already over: nothing to do
    assert asyncio.run(runner.drain()) == 4
    assert backend.routes == {A}
    owner = api(service, op="list")["bans"][0]["owners"][0]
    assert owner["created"] == clock.now - 100 and owner["expires"] == clock.now + 500
    assert "restored=0, queued" in owner["reason"]
    details = [e["detail"] for e in api(service, op="events", jail="sshd")["events"] if e["event"] == "queue"]
    assert [d.split()[0] for d in details] == ["ban", "ban", "unban", "ban"]
    assert details[2].endswith("removed") and details[3].endswith("expired")


def test_refusals_and_bad_lines_are_events_and_block_nothing(setup) -> None:  # type: ignore[no-untyped-def]
    service, backend, clock, path, runner = setup
    with open(path, "ab") as out:
        out.write(ban("198.51.100.7", clock.now) + b"f2b-bgp1 ban $(reboot) 1 1 1 0 x\n" + ban("203.0.113.7", clock.now))
    asyncio.run(runner.drain())
    assert backend.routes == {A}
    events = api(service, op="events")["events"]
    refused = [e for e in events if e["prefix"] == "198.51.100.7/32"]
    assert {e["event"] for e in refused} == {"refuse", "queue"}
    assert all("protected" in e["detail"] for e in refused)
    assert any(e["event"] == "queue-refused" and "malformed: address" in e["detail"] for e in events)
    queue = api(service, op="status")["queue"]
    assert (queue["depth"], queue["applied"], queue["refused"], queue["malformed"]) == (0, 1, 1, 1)


def test_events_filters_and_limit(setup) -> None:  # type: ignore[no-untyped-def]
    service, _, clock, path, runner = setup
    with open(path, "ab") as out:
        out.write(ban("203.0.113.7", clock.now) + ban("203.0.113.8", clock.now, jail="nginx") + unban("203.0.113.7"))
    asyncio.run(runner.drain())
    by_prefix = api(service, op="events", prefix="203.0.113.7")["events"]
    assert by_prefix and {e["prefix"] for e in by_prefix} == {A}
    assert {e["jail"] for e in api(service, op="events", jail="nginx")["events"]} == {"nginx"}
    assert len(api(service, op="events", limit=2)["events"]) == 2
    assert api(service, op="events", since=4e9)["events"] == []  # 2096
    for bad in ({"limit": 0}, {"limit": 1001}, {"since": "yesterday"}, {"prefix": "10.1"}):
        assert api(service, op="events", **bad)["ok"] is False


def test_a_line_appended_while_the_daemon_runs_is_applied_at_once(setup) -> None:  # type: ignore[no-untyped-def]
    service, backend, clock, path, _ = setup
    runner = SpoolRunner(service.queue, service, safety_interval=3600)  # only inotify can wake it in time

    async def scenario() -> None:
        task = asyncio.create_task(runner.run())
        await asyncio.sleep(0.1)  # let it drain the empty queue and wait
        with open(path, "ab") as out:
            out.write(ban("203.0.113.7", clock.now))
        deadline = asyncio.get_running_loop().time() + 10
        while A not in backend.routes and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    assert backend.routes == {A}


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1.5d", 129600)])
def test_since_durations(text: str, seconds: float) -> None:
    assert _duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "-5m", "5w", "nan", "inf", " 5m", "1e12"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(click.BadParameter):
        _duration(text)


def test_pipelined_requests_on_one_connection_keep_their_order(setup) -> None:  # type: ignore[no-untyped-def]
    """The .py action pipelines: the API starts one task per line, in order. A ban and the unban
    right behind it must end unbanned, so each handler writes the store before it first awaits."""
    service, backend, _, _, _ = setup

    async def pipeline() -> None:
        lines = [{"op": "ban", "prefix": "203.0.113.7", "jail": "sshd"}, {"op": "unban", "prefix": "203.0.113.7", "jail": "sshd"},
                 {"op": "ban", "prefix": "203.0.113.8", "jail": "sshd"}]
        backend.gate = asyncio.Event()  # the ban's route stays unacknowledged while the unban comes in
        tasks = [asyncio.create_task(handle_line(service, json.dumps(line).encode())) for line in lines]
        await asyncio.sleep(0)
        backend.gate.set()
        assert all(answer["ok"] for answer in await asyncio.gather(*tasks))

    asyncio.run(pipeline())
    assert backend.routes == {"203.0.113.8/32"}
    assert [b["prefix"] for b in api(service, op="list")["bans"]] == ["203.0.113.8/32"]
