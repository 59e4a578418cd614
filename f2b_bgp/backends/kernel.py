"""Blackhole routes in the kernel, marked with our route protocol number, written in batches.

Like the ExaBGP backend: callers queue their calls, one sender writes up to
BATCH route messages per netlink send (rtnl_socket) and settles each prefix by
its own ack, and everything queued while a send is in flight goes into the
next one. The queue holds the callers' own prefix lists, so it needs no bound
of its own; a batch takes what is left of each queued call in turn, so a ban
waits at most one batch behind a replay of a million. rtnl_dump reads what is
installed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
from collections import deque
from collections.abc import Sequence

from ..config import KernelConfig
from ..logfmt import kv
from ..model import BackendStatus, Prefix
from . import rtnl_dump
from .base import Backend, BackendUnavailable, Failures
from .rtnl_route import ROUTE_TYPES, Ack, RouteEncoder, RouteSpec, Verb
from .rtnl_socket import RouteSocket

log = logging.getLogger(__name__)

BATCH = 512  # route messages per send; their acks fit the socket's receive buffer
VERB_NAMES = {Verb.ADD: "replace", Verb.DELETE: "del"}


def wire(prefix: Prefix) -> tuple[int, bytes, int]:
    """(address family, destination bytes, prefix length) of a route message."""
    return socket.AF_INET if prefix.version == 4 else socket.AF_INET6, prefix.packed, prefix.length


class _Call:
    """One announce or withdraw: sent in slices, its prefixes settled one by one in any order."""

    def __init__(self, verb: Verb, prefixes: Sequence[Prefix]) -> None:
        self.verb, self.prefixes = verb, prefixes
        self.sent = 0  # prefixes[:sent] are in a batch
        self.left = len(prefixes)
        self.failures: Failures = {}
        self.done: asyncio.Future[Failures] = asyncio.get_running_loop().create_future()

    def settle(self, prefix: Prefix, error: str | None) -> None:
        if error is not None:
            self.failures[prefix] = error
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(self.failures)


class KernelBackend(Backend):
    name = "kernel"

    def __init__(self, config: KernelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = RouteEncoder(RouteSpec(config.table, config.protocol, config.metric,
                                              ROUTE_TYPES[config.route_type.value]))
        self.routes: RouteSocket | None = None
        self.queue: deque[_Call] = deque()
        self.work = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        self.last_error = ""

    async def start(self) -> None:
        self.routes = RouteSocket()
        self.sender = asyncio.create_task(self._send_loop())

    async def stop(self) -> None:
        if self.sender is not None:
            self.sender.cancel()
            await asyncio.gather(self.sender, return_exceptions=True)
            self.sender = None
        self._fail_queued("kernel backend stopped")
        if self.routes is not None:
            self.routes.close()
            self.routes = None

    @property
    def ready(self) -> bool:
        return self.routes is not None

    async def announce(self, prefixes: Sequence[Prefix]) -> Failures:
        return await self._submit(Verb.ADD, prefixes)

    async def withdraw(self, prefixes: Sequence[Prefix]) -> Failures:
        return await self._submit(Verb.DELETE, prefixes)

    async def installed(self) -> set[Prefix] | None:
        """Our routes in our table, read in a thread so a million of them never hold up the API."""
        if self.routes is None:
            return None
        try:
            sock = rtnl_dump.open_socket()  # here: the socket belongs to this thread's network namespace
            return await asyncio.to_thread(rtnl_dump.dump, sock, self.config.table, self.config.protocol)
        except OSError as err:
            self.last_error = f"route dump: {err}"
            log.warning(kv("kernel-dump-failed", error=str(err)))
            return None  # cannot tell: nothing is withdrawn or announced on a guess

    def status(self) -> BackendStatus:
        settings = {"table": self.config.table, "protocol": self.config.protocol,
                    "route_type": self.config.route_type.value}
        counters = {"queued": sum(len(call.prefixes) - call.sent for call in self.queue),
                    **(self.routes.counts if self.routes else {})}
        return BackendStatus(ready=self.ready, last_error=self.last_error, settings=settings, counters=counters)

    # the queue and its sender ------------------------------------------------------------------------

    async def _submit(self, verb: Verb, prefixes: Sequence[Prefix]) -> Failures:
        if self.routes is None:
            raise BackendUnavailable("kernel backend not started")
        if not prefixes:
            return {}
        call = _Call(verb, prefixes)
        self.queue.append(call)
        self.work.set()
        return await call.done

    async def _send_loop(self) -> None:
        while True:
            await self.work.wait()
            self.work.clear()
            while self.queue:
                batch = self._next_batch()
                try:
                    await self._send_batch(batch)
                except asyncio.CancelledError:
                    for call, prefix in batch:
                        call.settle(prefix, "kernel backend stopped")
                    raise
                except Exception as err:  # never leave a caller waiting, never stop sending
                    log.exception("kernel send failed")
                    self.last_error = f"netlink: {err}"
                    for call, prefix in batch:
                        call.settle(prefix, self.last_error)
                # acks come back within the send, so nothing above waits: yield, so that settled callers
                # go on and new calls queue, before the next batch
                await asyncio.sleep(0)

    def _next_batch(self) -> list[tuple[_Call, Prefix]]:
        """Up to BATCH prefixes, taking what is left of each queued call in turn; a call not done goes last."""
        batch: list[tuple[_Call, Prefix]] = []
        for _ in range(len(self.queue)):
            if len(batch) >= BATCH:
                break
            call = self.queue.popleft()
            end = min(len(call.prefixes), call.sent + BATCH - len(batch))
            batch.extend((call, prefix) for prefix in call.prefixes[call.sent:end])
            call.sent = end
            if end < len(call.prefixes):
                self.queue.append(call)
        return batch

    def _fail_queued(self, error: str) -> None:
        while self.queue:
            call = self.queue.popleft()
            for prefix in call.prefixes[call.sent:]:
                call.settle(prefix, error)

    async def _send_batch(self, batch: list[tuple[_Call, Prefix]]) -> None:
        assert self.routes is not None
        requests = []
        for call, prefix in batch:
            seq = self.routes.next_seq()
            requests.append((seq, self.encoder.encode(call.verb, seq, *wire(prefix))))
        acks = await self.routes.exchange(requests)
        failed: list[tuple[Prefix, str]] = []
        for (call, prefix), (seq, _) in zip(batch, requests):
            error = _error(call.verb, acks[seq])
            if error is not None:
                failed.append((prefix, error))
            call.settle(prefix, error)
        if failed:  # one line per send: the service logs what each caller got
            self.last_error = failed[-1][1]
            log.warning("kernel batch=%d failed=%d first=%s error=%r", len(batch), len(failed), *failed[0])


def _error(verb: Verb, ack: Ack) -> str | None:
    if ack.errno == 0 or (verb is Verb.DELETE and ack.errno == errno.ESRCH):  # ESRCH: already absent
        return None
    reason = f"{os.strerror(ack.errno)}: {ack.message}" if ack.message else os.strerror(ack.errno)
    return f"netlink {VERB_NAMES[verb]}: {reason}"
