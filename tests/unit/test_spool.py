"""The fail2ban queue: the line table in tests/data/spool_lines.txt, then the reader on real files.

The reader tests drive Spool.drain() with a recording apply function: order, the
offset kept across a restart, a replaced or truncated file, refused lines that
never block the ones behind them, compaction only while no appender has the file
open, and an insecure queue that is not read at all.
"""

from __future__ import annotations

import ast
import asyncio
import operator
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from f2b_bgp.model import QueueStatus
from f2b_bgp.spool import MAGIC, Entry, Malformed, Spool, format_line, parse_line, prepare

CASES = Path(__file__).parent.parent / "data" / "spool_lines.txt"
CASE = re.compile(r"(?P<line>.+?)  (?P<kind>entry|malformed) (?P<verdict>.+?)  # (?P<why>\S.*)")
OPS = {ast.Add: operator.add, ast.Mult: operator.mul}


def _bytes_expr(text: str) -> bytes:
    """A bytes literal, or literals and counts joined by + and * (for long lines); nothing else."""
    def value(node: ast.AST) -> bytes | int:
        if isinstance(node, ast.Constant) and isinstance(node.value, (bytes, int)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            return OPS[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not a bytes expression: {text}")
    result = value(ast.parse(text, mode="eval").body)
    assert isinstance(result, bytes), text
    return result


def _cases() -> list[tuple[bytes, str, str, int]]:
    cases = []
    for number, line in enumerate(CASES.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = CASE.fullmatch(line)
        assert match, f"{CASES}:{number}: not '<line>  entry|malformed <verdict>  # <why>'"
        cases.append((_bytes_expr(match["line"]), match["kind"], match["verdict"], number))
    return cases


@pytest.mark.parametrize("raw,kind,verdict,number", _cases(), ids=lambda v: f"l{v}" if isinstance(v, int) else None)
def test_line_case(raw: bytes, kind: str, verdict: str, number: int) -> None:
    if kind == "malformed":
        with pytest.raises(Malformed) as err:
            parse_line(raw)
        assert ast.literal_eval(verdict) in str(err.value), f"line {number}"
        return
    op, address, started, bantime, failures, restored, jail = verdict.split(" ", 6)
    expected = Entry(op, "" if address == "''" else address, float(started), int(bantime), int(failures),
                     restored == "1", ast.literal_eval(jail))
    assert parse_line(raw) == expected, f"line {number}"


def test_format_line_parses_back() -> None:
    for entry in (Entry("ban", "2001:db8::1", 1700000000.25, -1, 3, True, "a b"), Entry("flush", "", 0.0, 0, 0, False, "x")):
        line = format_line(entry)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert parse_line(line[:-1]) == entry


# --- the reader ---------------------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.applied: list[tuple[str, str, str]] = []
        self.refused: list[str] = []

    async def apply(self, entry: Entry) -> str:
        await asyncio.sleep(0)  # let other addresses interleave, as the service's awaits do
        self.applied.append((entry.op, entry.address, entry.jail))
        return "refused (limit)" if entry.jail == "full" else "active"

    def refuse(self, excerpt: str, reason: str) -> None:
        self.refused.append(reason)


def line(op: str, address: str, jail: str = "sshd", started: float = 1700000000.0) -> bytes:
    if op == "flush":
        return format_line(Entry("flush", "", 0.0, 0, 0, False, jail))
    return format_line(Entry(op, address, started, 600, 3, False, jail))


def drain(spool: Spool, rec: Recorder) -> int:
    return asyncio.run(spool.drain(rec.apply, rec.refuse))


@pytest.fixture
def queue(tmp_path: Path) -> Path:
    path = tmp_path / "fail2ban.queue"
    prepare(path)
    return path


def append(path: Path, *lines: bytes) -> None:
    with open(path, "ab") as out:
        for one in lines:
            out.write(one)


def test_prepare_creates_a_private_queue(queue: Path) -> None:
    assert queue.stat().st_size == 0 and queue.stat().st_mode & 0o777 == 0o640


def test_lines_apply_in_order_per_address_and_a_flush_waits_for_what_came_before(queue: Path) -> None:
    append(queue, line("ban", "192.0.2.1"), line("ban", "192.0.2.2"), line("unban", "192.0.2.1"),
           line("ban", "192.0.2.1"), line("flush", "", "sshd"), line("ban", "192.0.2.3"))
    rec = Recorder()
    assert drain(Spool(queue), rec) == 6
    ops_of = lambda a: [op for op, addr, _ in rec.applied if addr == a]  # noqa: E731
    assert ops_of("192.0.2.1") == ["ban", "unban", "ban"]
    flush_at = rec.applied.index(("flush", "", "sshd"))
    assert {a for _, a, _ in rec.applied[:flush_at]} == {"192.0.2.1", "192.0.2.2"}
    assert rec.applied[flush_at + 1:] == [("ban", "192.0.2.3", "sshd")]


def test_bad_lines_are_refused_and_never_block_the_ones_behind(queue: Path) -> None:
    append(queue, b"garbage\n", line("ban", "192.0.2.1"), b"f2b-bgp1 ban $(id) 1 600 3 0 x\n", b"\xff\n",
           b"f2b-bgp1 ban 192.0.2.9 1 600 3 0 " + b"j" * 5000 + b"\n", line("ban", "192.0.2.2"))
    rec, spool = Recorder(), Spool(queue)
    assert drain(spool, rec) == 6
    assert [a for _, a, _ in rec.applied] == ["192.0.2.1", "192.0.2.2"]
    assert len(rec.refused) == 4 and spool.status().malformed == 4
    assert spool.status().depth == 0


def test_a_line_without_its_newline_waits_for_it(queue: Path) -> None:
    whole = line("ban", "192.0.2.1")
    append(queue, whole[:10])
    rec, spool = Recorder(), Spool(queue)
    assert drain(spool, rec) == 0 and rec.applied == [] and rec.refused == []
    append(queue, whole[10:])
    assert drain(spool, rec) == 1 and rec.applied == [("ban", "192.0.2.1", "sshd")]


def test_a_restart_resumes_after_the_last_applied_line(queue: Path) -> None:
    append(queue, line("ban", "192.0.2.1"), line("ban", "192.0.2.2"))
    first = Recorder()
    drain(Spool(queue, compact_at=1 << 30), first)
    append(queue, line("unban", "192.0.2.1"))
    second = Recorder()
    assert drain(Spool(queue, compact_at=1 << 30), second) == 1  # a new daemon: only the new line
    assert second.applied == [("unban", "192.0.2.1", "sshd")]


def test_a_queue_replaced_while_the_daemon_was_away_is_read_from_its_start(queue: Path) -> None:
    append(queue, line("ban", "192.0.2.1"), line("ban", "192.0.2.2"))
    drain(Spool(queue, compact_at=1 << 30), Recorder())
    queue.unlink()
    append(queue, line("ban", "192.0.2.7"), line("ban", "192.0.2.8"), line("ban", "192.0.2.9"))  # longer than before
    rec = Recorder()
    assert drain(Spool(queue, compact_at=1 << 30), rec) == 3
    assert [a for _, a, _ in rec.applied] == ["192.0.2.7", "192.0.2.8", "192.0.2.9"]


def test_a_queue_replaced_while_the_daemon_runs_is_followed(queue: Path) -> None:
    spool, rec = Spool(queue, compact_at=1 << 30), Recorder()
    append(queue, line("ban", "192.0.2.1"))
    drain(spool, rec)
    queue.unlink()
    append(queue, line("ban", "192.0.2.2"))
    drain(spool, rec)  # notices the replacement once the old file is done
    drain(spool, rec)
    assert [a for _, a, _ in rec.applied] == ["192.0.2.1", "192.0.2.2"]


def test_a_drained_queue_is_emptied_and_the_next_lines_still_arrive(queue: Path) -> None:
    spool, rec = Spool(queue, compact_at=1), Recorder()
    append(queue, line("ban", "192.0.2.1"))
    drain(spool, rec)
    assert queue.stat().st_size == 0 and spool.offset == 0
    append(queue, line("ban", "192.0.2.2"))
    drain(spool, rec)
    again = Recorder()
    assert drain(Spool(queue, compact_at=1), again) == 0  # a restart applies nothing twice
    assert [a for _, a, _ in rec.applied] == ["192.0.2.1", "192.0.2.2"] and again.applied == []


def test_no_compaction_while_an_appender_has_the_queue_open(queue: Path) -> None:
    spool, rec = Spool(queue, compact_at=1), Recorder()
    with open(queue, "ab") as appender:  # a `printf >>` between its open and its write
        appender.write(line("ban", "192.0.2.1"))
        appender.flush()
        drain(spool, rec)
        assert queue.stat().st_size > 0  # the lease was refused: not truncated under the writer
        appender.write(line("ban", "192.0.2.2"))
    drain(spool, rec)
    assert [a for _, a, _ in rec.applied] == ["192.0.2.1", "192.0.2.2"]
    assert queue.stat().st_size == 0


def test_a_crash_between_truncation_and_saving_the_offset_loses_nothing(queue: Path) -> None:
    append(queue, line("ban", "192.0.2.1"), line("ban", "192.0.2.2"))
    drain(Spool(queue, compact_at=1 << 30), Recorder())  # state: offset = two lines
    os.truncate(queue, 0)  # what the compaction did before the crash
    append(queue, line("ban", "192.0.2.7"), line("unban", "192.0.2.7"), line("ban", "192.0.2.8"))
    rec = Recorder()
    assert drain(Spool(queue), rec) == 3
    assert sorted((o, a) for o, a, _ in rec.applied) == [("ban", "192.0.2.7"), ("ban", "192.0.2.8"), ("unban", "192.0.2.7")]
    assert [o for o, a, _ in rec.applied if a == "192.0.2.7"] == ["ban", "unban"]


def test_status_counts_depth_and_age_of_the_oldest_line(queue: Path) -> None:
    spool, rec = Spool(queue), Recorder()
    assert spool.status().depth == 0 and spool.status().oldest_age is None
    append(queue, line("ban", "192.0.2.1", jail="full"), line("ban", "192.0.2.2"))
    drain(spool, rec)
    assert spool.status() == QueueStatus(str(queue), depth=0, oldest_age=None, applied=1, refused=1, malformed=0,
                                         error="")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown the queue")
def test_a_queue_others_could_write_is_not_read(queue: Path) -> None:
    append(queue, line("ban", "192.0.2.1"))
    for change in (lambda: os.chmod(queue, 0o646), lambda: os.chown(queue, 65534, -1)):
        os.chmod(queue, 0o640)
        os.chown(queue, 0, -1)
        change()
        spool, rec = Spool(queue), Recorder()
        assert drain(spool, rec) == 0 and rec.applied == []
        status = spool.status()
        assert status.depth == 1 and status.oldest_age is not None
        assert "world-writable" in status.error or "owned by uid 65534" in status.error
    os.chmod(queue, 0o640)
    os.chown(queue, 0, -1)
    spool, rec = Spool(queue), Recorder()
    assert drain(spool, rec) == 1 and spool.status().error == ""


def test_magic_is_the_versioned_prefix() -> None:
    assert MAGIC == "f2b-bgp1"  # the shipped .conf and .py actions write it literally


def test_concurrent_shell_appenders_while_the_daemon_drains_and_compacts(queue: Path) -> None:
    """8 `sh` processes append 200 lines each with `printf >>` while the reader drains and empties
    the queue as often as it can: every line is applied exactly once."""
    writers, lines = 8, 200
    script = ('i=0; while [ $i -lt %d ]; do i=$((i+1)); '
              'printf "f2b-bgp1 ban 2001:db8:%%x::%%x 1700000000 600 1 0 w%%s\\n" "$1" "$i" "$1" >> "$2"; sleep 0.001; done')
    procs = [subprocess.Popen(["sh", "-c", script % lines, "sh", str(w + 1), str(queue)]) for w in range(writers)]
    spool, rec = Spool(queue, compact_at=1), Recorder()
    compactions = 0

    async def drain_until_done() -> None:
        nonlocal compactions
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = all(p.poll() is not None for p in procs)
            applied = len(rec.applied)
            await spool.drain(rec.apply, rec.refuse)
            compactions += len(rec.applied) > applied and spool.offset == 0  # applied, then emptied
            if done and len(rec.applied) == applied:
                return  # the writers are gone and the queue has nothing more
            await asyncio.sleep(0.001)

    asyncio.run(drain_until_done())
    assert [p.wait(10) for p in procs] == [0] * writers
    assert rec.refused == []
    assert sorted(rec.applied) == sorted({(op, a, j) for op, a, j in rec.applied}) and len(rec.applied) == writers * lines
    assert compactions > 0  # the truncation really raced the writers
