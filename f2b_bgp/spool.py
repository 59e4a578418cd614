"""The fail2ban queue: bans and unbans appended by the actions, applied by the daemon in order.

One text file under the daemon's state directory (default: beside
daemon.database, named fail2ban.queue). Appenders (the .conf action's
`printf >>`, the .py action while the daemon is away) add whole lines with
one O_APPEND write each; only the daemon reads it. One line:

    f2b-bgp1 OP ADDRESS TIME BANTIME FAILURES RESTORED JAIL

OP is ban, unban or flush (ADDRESS "-"); TIME is fail2ban's ban start (epoch),
BANTIME seconds (-1 permanent); JAIL is the rest of the line. Every line is
hostile until parsed: a line that does not parse is refused (one log line, one
event) and the lines behind it go on.

Where the daemon is: `<queue>.state` holds the offset of the first line not yet
applied and the SHA-256 of everything before it, rewritten (by rename) after
each batch. A crash between applying a batch and saving its offset replays
that batch, in order; ban and unban are idempotent, so a replay ends in the
same state. A fully applied queue is emptied in place (ftruncate) under a
write lease: the kernel grants it only while no appender has the file open,
and holds back new opens until it is released, so no append can fall between
the last read and the truncation. If the daemon dies between truncating and
saving offset 0, the hash no longer matches the file and it reads the file
from its start.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import ipaddress
import logging
import os
import re
import signal
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from .model import QueueStatus

log = logging.getLogger(__name__)

MAGIC = "f2b-bgp1"
NAME = "fail2ban.queue"
MAX_LINE = 512
MAX_JAIL = 256
COMPACT_AT = 256 * 1024
DEPTH_SCAN = 16 * 1024 * 1024
F_SETLEASE, F_GETLEASE = 1024, 1025  # fcntl.h; Python's fcntl module has no names for them
ADDRESS = re.compile(r"[0-9A-Fa-f:.]{2,45}", re.ASCII)
EPOCH = re.compile(r"\d{1,12}(\.\d{1,9})?", re.ASCII)
BANTIME = re.compile(r"-1|\d{1,10}", re.ASCII)
COUNT = re.compile(r"\d{1,9}", re.ASCII)
OPS = ("ban", "unban", "flush")


def default_path(database: Path) -> Path:
    return database.parent / NAME


@dataclass(frozen=True)
class Entry:
    op: str  # ban, unban, flush
    address: str  # "" for flush
    started: float
    bantime: int
    failures: int
    restored: bool
    jail: str


class Malformed(ValueError):
    """A queue line that is not an entry; the message says why in one line."""


def parse_line(raw: bytes) -> Entry:
    """One line without its newline -> Entry, or Malformed. Nothing in it is trusted."""
    if len(raw) > MAX_LINE:
        raise Malformed(f"longer than {MAX_LINE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("not UTF-8") from None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise Malformed("control character")
    fields = text.split(" ", 7)
    if len(fields) != 8:
        raise Malformed(f"{len(fields)} fields, expected 8")
    magic, op, address, started, bantime, failures, restored, jail = fields
    if magic != MAGIC:
        raise Malformed(f"does not start with {MAGIC}")
    if op not in OPS:
        raise Malformed(f"unknown op {op[:16]!r}")
    if op == "flush":
        if (address, started, bantime, failures, restored) != ("-",) * 5:
            raise Malformed("flush takes '-' in every field but the jail")
        return Entry(op, "", 0.0, 0, 0, False, _jail(jail))
    if not ADDRESS.fullmatch(address):
        raise Malformed("address is not an IPv4 or IPv6 address")
    if not EPOCH.fullmatch(started):
        raise Malformed("time is not an epoch")
    if not BANTIME.fullmatch(bantime):
        raise Malformed("bantime is not -1 or a whole number")
    if not COUNT.fullmatch(failures):
        raise Malformed("failures is not a whole number")
    if restored not in ("0", "1"):
        raise Malformed("restored is not 0 or 1")
    return Entry(op, address, float(started), int(bantime), int(failures), restored == "1", _jail(jail))


def _address_key(text: str) -> str:
    """One key per address however it is spelled, so its entries stay in order."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _jail(text: str) -> str:
    if not text.strip():
        raise Malformed("empty jail")
    if len(text.encode()) > MAX_JAIL:
        raise Malformed(f"jail longer than {MAX_JAIL} bytes")
    return text


def format_line(entry: Entry) -> bytes:
    """The line an appender writes (the .py action has its own copy: it cannot import f2b_bgp)."""
    if entry.op == "flush":
        return f"{MAGIC} flush - - - - - {entry.jail}\n".encode()
    return (f"{MAGIC} {entry.op} {entry.address} {entry.started:.6f} {entry.bantime} {entry.failures} "
            f"{int(entry.restored)} {entry.jail}\n").encode()


class InsecureQueue(Exception):
    """The queue (or its directory) could be written by someone the daemon must not trust."""


def check_owner(st: os.stat_result, what: str, dir_ok_sticky: bool = False) -> None:
    if st.st_uid not in (0, os.geteuid()):
        raise InsecureQueue(f"{what} is owned by uid {st.st_uid}, not root or the daemon's user")
    if st.st_mode & stat.S_IWOTH and not (dir_ok_sticky and st.st_mode & stat.S_ISVTX):
        raise InsecureQueue(f"{what} is world-writable")


Apply = Callable[[Entry], Awaitable[str]]  # the outcome in a word or two, for the event log
Refuse = Callable[[str, str], None]  # (line excerpt, reason)


class Spool:
    """The daemon's reader of the queue file: drain() applies every complete line not yet applied."""

    def __init__(self, path: Path, compact_at: int = COMPACT_AT, batch: int = 500) -> None:
        self.path = path
        self.state_path = path.with_name(path.name + ".state")
        self.compact_at = compact_at
        self.batch = batch
        self.fd: int | None = None
        self.ino = 0
        self.offset = 0
        self.digest = hashlib.sha256()
        self.size = 0
        self.pending_since: float | None = None  # monotonic time the oldest unapplied byte was first seen
        self.error = ""
        self.counts = {"applied": 0, "refused": 0, "malformed": 0}
        self.lease_warned = False

    # status

    def depth(self) -> int:
        """Complete lines not yet applied (a torn line waits for its newline and is not counted).

        While the queue is refused (self.error) every line of the file counts. Counted in
        the first DEPTH_SCAN bytes only, so a huge queue cannot make status slow."""
        if self.fd is not None:
            size = os.fstat(self.fd).st_size
            return os.pread(self.fd, min(size - self.offset, DEPTH_SCAN), self.offset).count(b"\n") if size > self.offset else 0
        try:
            with open(self.path, "rb") as fh:
                return fh.read(DEPTH_SCAN).count(b"\n")
        except OSError:
            return 0

    def status(self) -> QueueStatus:
        depth = self.depth()
        age = None if not depth or self.pending_since is None else round(time.monotonic() - self.pending_since, 3)
        return QueueStatus(str(self.path), depth, age, self.counts["applied"], self.counts["refused"],
                           self.counts["malformed"], self.error)

    # reading

    def _open(self) -> bool:
        """Open (or re-open after replacement) the queue; False while it is missing or refused."""
        try:
            check_owner(os.stat(self.path.parent), f"directory {self.path.parent}", dir_ok_sticky=True)
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)  # RDWR: compaction
        except FileNotFoundError:
            self._fail("")
            return False
        except (OSError, InsecureQueue) as err:
            self._fail(f"cannot read {self.path}: {err}")
            return False
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InsecureQueue(f"{self.path} is not a regular file")
            check_owner(st, str(self.path))
        except InsecureQueue as err:
            os.close(fd)
            self._fail(f"refusing the queue: {err}")
            return False
        self.fd, self.ino = fd, st.st_ino
        self.offset, self.digest = self._resume(fd, st.st_size)
        self.error = ""
        return True

    def _fail(self, error: str) -> None:
        if error and error != self.error:
            log.error("queue error=%r (entries wait; fix and they are applied)", error)
        self.error = error

    def _resume(self, fd: int, size: int) -> tuple[int, hashlib._Hash]:
        """Where the last run stopped, if the file still starts with what it had applied."""
        try:
            offset_text, hexdigest = self.state_path.read_text().split()
            offset = int(offset_text)
        except (OSError, ValueError):
            return 0, hashlib.sha256()
        digest = hashlib.sha256(os.pread(fd, offset, 0)) if 0 <= offset <= size else None
        if digest is None or digest.hexdigest() != hexdigest:
            log.warning("queue path=%s changed since offset %d was saved; reading it from the start", self.path, offset)
            return 0, hashlib.sha256()
        return offset, digest

    def _save(self) -> None:
        tmp = self.state_path.with_name(self.state_path.name + ".tmp")
        tmp.write_text(f"{self.offset} {self.digest.hexdigest()}\n")
        os.replace(tmp, self.state_path)

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self.ino
        except FileNotFoundError:
            return True

    async def drain(self, apply: Apply, refuse: Refuse) -> int:
        """Apply every complete line not applied yet, in order; return how many lines were read."""
        if self.fd is None and not self._open():
            if self.error and self.pending_since is None and self.depth():
                self.pending_since = time.monotonic()
            return 0
        total = 0
        while True:
            assert self.fd is not None
            self.size = os.fstat(self.fd).st_size
            if self.size > self.offset and self.pending_since is None:
                self.pending_since = time.monotonic()
            lines = self._read_lines()
            if not lines:
                break
            await self._apply_batch(lines, apply, refuse)
            for raw in lines:
                self.offset += len(raw) + 1
                self.digest.update(raw + b"\n")
            self._save()
            total += len(lines)
        if self.offset >= self.size:
            self.pending_since = None
            if self._replaced():
                self._switch()
            elif self.offset >= self.compact_at:
                self._compact()
        return total

    def _read_lines(self) -> list[bytes]:
        """The next complete lines (at most one batch); an overlong line is read whole, to be refused."""
        assert self.fd is not None
        limit = self.batch * MAX_LINE
        chunk = os.pread(self.fd, min(self.size - self.offset, limit), self.offset)
        lines = chunk.split(b"\n")[:-1]
        if lines or len(chunk) < limit:
            return lines[: self.batch]  # nothing: a line still without its newline waits for it
        rest = os.pread(self.fd, self.size - self.offset, self.offset)
        end = rest.find(b"\n")
        return [] if end < 0 else [rest[:end]]

    async def _apply_batch(self, lines: list[bytes], apply: Apply, refuse: Refuse) -> None:
        """Apply in file order per address; different addresses concurrently; a flush waits for all before it."""
        segment: dict[str, list[Entry]] = {}
        for raw in lines:
            try:
                entry = parse_line(raw)
            except Malformed as err:
                self.counts["malformed"] += 1
                excerpt = raw[:80].decode("utf-8", "replace")
                log.warning("queue refused line=%r reason=%r", excerpt, str(err))
                refuse(excerpt, f"malformed: {err}")
                continue
            if entry.op == "flush":
                await self._apply_segment(segment, apply)
                segment = {}
                await self._apply_one(entry, apply)
            else:
                segment.setdefault(_address_key(entry.address), []).append(entry)
        await self._apply_segment(segment, apply)

    async def _apply_segment(self, segment: dict[str, list[Entry]], apply: Apply) -> None:
        async def in_order(entries: list[Entry]) -> None:
            for entry in entries:
                await self._apply_one(entry, apply)

        # every address runs to its end even if one fails, so a retry never races a leftover
        results = await asyncio.gather(*(in_order(entries) for entries in segment.values()), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _apply_one(self, entry: Entry, apply: Apply) -> None:
        outcome = await apply(entry)
        self.counts["refused" if outcome.startswith("refused") else "applied"] += 1

    def _switch(self) -> None:
        """The file was removed or replaced after everything in the old one was applied: follow the path."""
        if self.fd is not None:
            os.close(self.fd)
        self.fd = None
        self.offset, self.digest = 0, hashlib.sha256()
        self._save()
        log.info("queue path=%s replaced; following the new file", self.path)

    def _compact(self) -> None:
        """Empty a fully applied queue in place, only while no appender has it open (a write lease).

        The lease goes on the daemon's own descriptor: the kernel refuses it while any
        other descriptor of the file is open, and makes later opens wait until it is
        released."""
        assert self.fd is not None
        try:
            fcntl.fcntl(self.fd, F_SETLEASE, fcntl.F_WRLCK)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EBUSY) and not self.lease_warned:  # EAGAIN: a writer has it open
                log.warning("queue path=%s is never emptied: no write lease (%s; fs.leases-enable?)", self.path, err)
                self.lease_warned = True
            return
        try:
            if os.fstat(self.fd).st_size == self.offset:
                os.ftruncate(self.fd, 0)
                self.offset, self.size, self.digest = 0, 0, hashlib.sha256()
                self._save()
        finally:
            fcntl.fcntl(self.fd, F_SETLEASE, fcntl.F_UNLCK)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def prepare(path: Path) -> None:
    """Create the queue (0640) if missing, and keep a lease break (SIGIO) from killing the daemon."""
    signal.signal(signal.SIGIO, signal.SIG_IGN)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640))
    except OSError as err:
        log.error("queue path=%s cannot be created: %s", path, err.strerror)
