"""Apply the fail2ban queue (spool.py) through the service, as soon as lines arrive.

The daemon drains the queue once before it opens its API (so a request that
arrives over the socket never overtakes one queued before the start), then
again whenever inotify reports a write to the queue file (Linux inotify on its
directory, through ctypes: no dependency), and once a second in any case, which
also catches a queue fixed after being refused. Without inotify it polls every
POLL_INTERVAL. Measured on an idle daemon: a 20 Hz poll cost 0.6 % of a core
against 0.05 % without it; inotify wakes it only for queue writes.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import ipaddress
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

from .errors import F2bBgpError, StoreError
from .logfmt import kv
from .service import BanRequest, Service
from .spool import Entry, Spool

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05  # without inotify
SAFETY_INTERVAL = 1.0  # with inotify
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x2, 0x4, 0x8, 0x80, 0x100
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
EVENT = struct.Struct("iIII")  # struct inotify_event without its name


class SpoolRunner:
    def __init__(self, spool: Spool, service: Service, safety_interval: float = SAFETY_INTERVAL) -> None:
        self.spool, self.service, self.safety_interval = spool, service, safety_interval

    async def drain(self) -> int:
        return await self.spool.drain(self.apply, self.refuse_line)

    async def run(self) -> None:
        wake = asyncio.Event()
        watch = Watch.start(self.spool.path, wake.set)
        interval = self.safety_interval if watch is not None else POLL_INTERVAL
        try:
            while True:
                wake.clear()
                try:
                    await self.drain()
                except StoreError as err:  # nothing applied is lost: the entries stay queued
                    log.error(kv("queue-deferred", error=err.message, retry_in=interval))
                except Exception:  # noqa: BLE001 - the queue must outlive one bad round
                    log.exception("queue drain failed; retrying")
                try:
                    await asyncio.wait_for(wake.wait(), interval)
                except TimeoutError:
                    pass
        finally:
            if watch is not None:
                watch.close()

    async def apply(self, entry: Entry) -> str:
        """One entry through the service; the outcome goes to the event log and comes back in a word."""
        prefix = _canonical(entry.address)
        try:
            outcome = await self._call(entry)
        except StoreError:
            raise  # not a refusal: the entry waits in the queue until the store takes writes again
        except F2bBgpError as err:  # the service logged it (one line, where it was detected)
            outcome = f"refused: {err.message}" if err.code == "refused" else f"refused ({err.code}): {err.message}"
        self.service.store.event("queue", prefix, entry.jail, f"{entry.op} {_detail(entry)} {outcome}")
        return outcome

    async def _call(self, entry: Entry) -> str:
        if entry.op == "ban":
            reason = f"fail2ban: {entry.failures} failures, restored={int(entry.restored)}, queued"
            result = await self.service.ban(BanRequest(entry.address, entry.jail, entry.bantime, reason, entry.started))
            return result.state.value
        if entry.op == "unban":
            unbanned = await self.service.unban(entry.address, entry.jail)
            return "removed" if unbanned.removed else "absent"
        flushed = await self.service.flush(entry.jail)
        return f"removed {flushed.removed}"

    def refuse_line(self, excerpt: str, reason: str) -> None:
        self.service.store.event("queue-refused", "", "", f"{reason}: {excerpt!r}")


class Watch:
    """inotify on the queue's directory; calls `changed` when an event names the queue file."""

    def __init__(self, fd: int, name: bytes, changed: Callable[[], None]) -> None:
        self.fd, self.name, self.changed = fd, name, changed
        asyncio.get_running_loop().add_reader(fd, self._read)

    @classmethod
    def start(cls, path: Path, changed: Callable[[], None]) -> Watch | None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            if fd < 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            mask = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
            if libc.inotify_add_watch(fd, os.fsencode(path.parent), mask) < 0:
                err = ctypes.get_errno()
                os.close(fd)
                raise OSError(err, os.strerror(err))
        except (OSError, AttributeError) as err:
            log.warning("queue path=%s inotify unavailable (%s); polling every %.2f s", path, err, POLL_INTERVAL)
            return None
        return cls(fd, os.fsencode(path.name), changed)

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 65536)
        except OSError as err:
            if err.errno != errno.EAGAIN:
                log.warning("queue inotify read failed: %s", err)
            return
        offset = 0
        while offset + EVENT.size <= len(data):
            _, _, _, length = EVENT.unpack_from(data, offset)
            name = data[offset + EVENT.size: offset + EVENT.size + length].rstrip(b"\0")
            offset += EVENT.size + length
            if name == self.name:
                self.changed()
                return

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


def _canonical(address: str) -> str:
    """The prefix as the store writes it (events are filtered by it); text that is no address stays as is."""
    try:
        return str(ipaddress.ip_network(address))
    except ValueError:
        return address[:64]


def _detail(entry: Entry) -> str:
    return f"started={entry.started:.0f} bantime={entry.bantime} ->" if entry.op == "ban" else "->"
