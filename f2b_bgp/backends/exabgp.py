"""Announce blackholes through a long-running ExaBGP, via the bridge it starts (`f2b-bgp exabgp-bridge`).

The daemon listens on backends.exabgp.bridge_socket; the bridge connects. Two
commands are in flight at a time (ExaBGP acks them in order, so ExaBGP parses
the next line while the daemon handles the bans answering the last), and a
prefix counts as done only after ExaBGP's `done` for its command. While the
commands wait for their acks, new work queues up and goes out in the next
batch (`announce attributes ... nlri`), so a ban storm costs a few lines, not
one per ban. The queue is bounded
(max_in_flight prefixes): callers wait for room, nothing is dropped. Every
(re)connect of a bridge (ExaBGP started or restarted, or this daemon did)
asks the service to replay: `show adj-rib out` tells what ExaBGP holds, and
the difference to the store is announced or withdrawn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pwd
import socket
import struct
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import unix_socket
from ..logfmt import kv
from ..config import BgpConfig, ExabgpConfig
from ..model import BackendStatus, BridgeInfo, PeerView, Prefix
from .base import Backend, BackendUnavailable, Failures
from .exabgp_lines import SHOW_ADJ_RIB_OUT, Attributes, Verb, commands, parse_adj_rib_out

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20
HELLO_TIMEOUT = 10.0
IN_FLIGHT_COMMANDS = 2
MAX_PEERS = 1024  # neighbor states kept from the bridge's events


@dataclass
class _Item:
    verb: Verb
    prefix: Prefix
    done: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(frozen=True)
class BridgeAccess:
    """Whoever speaks as the bridge decides what the firewalls receive: the socket belongs to
    ExaBGP's user alone (mode 0600), and every connection's peer credentials must be that user's."""

    user: str  # ExaBGP's user (exabgp.daemon.user)

    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def check(self, writer: asyncio.StreamWriter) -> tuple[int, int] | str:
        """(pid, uid) of an allowed peer, or why it is refused."""
        sock = writer.get_extra_info("socket")
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        try:
            wanted = self.uid()
        except KeyError:
            return f"no such user {self.user!r} (backends.exabgp.bridge_user)"
        return (pid, uid) if uid == wanted else f"pid {pid} runs as uid {uid}, not {self.user} (uid {wanted})"


def attributes(bgp: BgpConfig) -> dict[int, Attributes]:
    """The configured communities only: NO_EXPORT is never added, since a speaker honouring it
    does not send the route over an eBGP session, and the firewall is usually one."""
    hops = {4: bgp.next_hop_ipv4, 6: bgp.next_hop_ipv6}
    return {v: Attributes(str(hop) if hop is not None else None, bgp.communities) for v, hop in hops.items()}


@dataclass
class _Reply:
    """What ExaBGP says to one command: the lines before its ack, then the ack."""

    ack: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    output: list[str] = field(default_factory=list)
    overflow: bool = False  # the command said more than output_cap lines


class _Link:
    """One connected bridge: its stream and the replies awaited, in the order the commands went out
    (ExaBGP answers its commands in order, so the first ack belongs to the oldest command)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hello: dict[str, Any]) -> None:
        self.reader, self.writer, self.hello = reader, writer, hello
        self.connected = time.time()
        self.replies: deque[_Reply] = deque()

    def close(self) -> None:
        self.writer.close()
        for reply in self.replies:
            if not reply.ack.done():
                reply.ack.set_exception(BackendUnavailable("ExaBGP bridge disconnected"))


class ExabgpBackend(Backend):
    name = "exabgp"

    def __init__(self, settings: ExabgpConfig, attrs: Mapping[int, Attributes], access: BridgeAccess,
                 output_cap: int) -> None:
        super().__init__()
        self.settings, self.attributes, self.access = settings, dict(attrs), access
        self.stale_attributes = False  # set: ExaBGP may hold routes with other attributes than these
        self.output_cap = output_cap  # lines of `show adj-rib out`: one per route and peer
        self.server: asyncio.AbstractServer | None = None
        self.link: _Link | None = None
        self.queue: deque[_Item] = deque()
        self.room = asyncio.Semaphore(self.settings.max_in_flight)
        self.work = asyncio.Event()
        # two commands in flight: ExaBGP parses the next line while the daemon answers the bans of the last
        self.turn = asyncio.Semaphore(IN_FLIGHT_COMMANDS)
        self.sender: asyncio.Task[None] | None = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.peers: dict[str, PeerView] = {}
        self.counts = {"lines": 0, "announced": 0, "withdrawn": 0, "errors": 0, "timeouts": 0, "connects": 0}
        self.last_error = ""

    # life cycle -------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.server = await unix_socket.listen(self._accept, self.settings.bridge_socket, 0o600, "", MAX_LINE,
                                               owner=self.access.uid())
        self.sender = asyncio.create_task(self._send_loop())

    async def stop(self) -> None:
        """Routes stay: ExaBGP keeps announcing them until it stops or a new daemon replays."""
        if self.server is not None:
            self.server.close()
        if self.link is not None:
            self.link.close()
        for task in [*self.tasks, *([self.sender] if self.sender else [])]:
            task.cancel()
        await asyncio.gather(*self.tasks, *([self.sender] if self.sender else []), return_exceptions=True)
        unix_socket.remove(self.settings.bridge_socket)

    @property
    def ready(self) -> bool:
        return self.link is not None

    # the backend contract --------------------------------------------------------------------------

    async def announce(self, prefixes: Sequence[Prefix]) -> Failures:
        return await self._submit(Verb.ANNOUNCE, prefixes)

    async def withdraw(self, prefixes: Sequence[Prefix]) -> Failures:
        return await self._submit(Verb.WITHDRAW, prefixes)

    async def installed(self) -> set[Prefix] | None:
        """What ExaBGP announces with the attributes configured now: a prefix announced with another
        next-hop (the config changed) does not count, so reconcile announces it again."""
        if self.link is None:
            return None
        link = self.link
        try:
            reply = await self._exchange(link, SHOW_ADJ_RIB_OUT)
        except BackendUnavailable:
            return None
        if reply.overflow:
            log.warning("exabgp adj-rib-out longer than %d lines: not compared, pending bans are retried",
                        self.output_cap)
            return None
        if self.stale_attributes:
            self.stale_attributes = False
            log.warning(kv("exabgp-attributes", changed=self.describe(), action="announcing every route again"))
            return set()
        return {p for p, hops in parse_adj_rib_out(reply.output).items() if self._as_configured(p, hops)}

    def _as_configured(self, prefix: Prefix, hops: frozenset[str]) -> bool:
        hop = self.attributes[prefix.version].next_hop
        return not hops or hop is None or hops == {hop}

    def reconfigure(self, attrs: Mapping[int, Attributes]) -> bool:
        """New attributes (a reload changed bgp settings); True if they differ: the next comparison
        then counts nothing as in place, so every route is announced again with them."""
        changed = dict(attrs) != self.attributes
        self.attributes = dict(attrs)
        self.stale_attributes |= changed
        return changed

    def describe(self) -> str:
        """The attributes as one text, to notice a change across restarts (communities are not in adj-rib-out)."""
        return "; ".join(f"ipv{v} {a.text()}" for v, a in sorted(self.attributes.items()))

    def status(self) -> BackendStatus:
        link = self.link
        bridge = BridgeInfo(_int(link.hello.get("pid")), _int(link.hello.get("exabgp_pid")),
                            round(link.connected, 1)) if link else None
        return BackendStatus(ready=self.ready, last_error=self.last_error,
                             counters={"queued": len(self.queue), **self.counts}, bridge=bridge,
                             peers=dict(sorted(self.peers.items())))

    # submitting work --------------------------------------------------------------------------------

    async def _submit(self, verb: Verb, prefixes: Sequence[Prefix]) -> Failures:
        if self.link is None:
            raise BackendUnavailable("ExaBGP bridge not connected (is ExaBGP running 'f2b-bgp exabgp-bridge'?)")
        items = []
        for prefix in prefixes:
            await self.room.acquire()  # backpressure: wait while max_in_flight prefixes are queued
            item = _Item(verb, prefix)
            item.done.add_done_callback(lambda _: self.room.release())
            self.queue.append(item)
            self.work.set()
            items.append(item)
        failures: Failures = {}
        for item in items:
            error = await item.done
            if error is not None:
                failures[item.prefix] = error
        return failures

    async def _send_loop(self) -> None:
        while True:
            await self.work.wait()
            self.work.clear()
            while self.queue:
                link = self.link
                if link is None:
                    self._fail_queued("ExaBGP bridge disconnected")
                    break
                await self.turn.acquire()  # the batch is taken once a command may go: it fills meanwhile
                if not self.queue:
                    self.turn.release()
                    break
                self._spawn(self._send_batch(link, self._next_batch()))

    def _next_batch(self) -> list[_Item]:
        """Up to batch_size queued items of the first item's verb and family, taken from the front; the
        others keep their order (any order is safe: the service never has two operations on one prefix
        in flight). It stops at a full batch, so 100,000 queued items cost each batch its own size."""
        first = self.queue[0]
        key = (first.verb, first.prefix.version)
        batch: list[_Item] = []
        skipped: list[_Item] = []
        while self.queue and len(batch) < self.settings.batch_size:
            item = self.queue.popleft()
            (batch if (item.verb, item.prefix.version) == key else skipped).append(item)
        self.queue.extendleft(reversed(skipped))
        return batch

    async def _send_batch(self, link: _Link, batch: list[_Item]) -> None:
        """One command for the batch, in a slot of `turn` the send loop took for it."""
        (command,) = commands(batch[0].verb, [i.prefix for i in batch], self.attributes, len(batch))
        try:
            await self._command(link, command.line())
            error = None
            self.counts["announced" if command.verb is Verb.ANNOUNCE else "withdrawn"] += len(batch)
        except _Refused:
            error = f"ExaBGP answered error to a {command.verb.value} of {len(batch)} prefixes"
            self.counts["errors"] += 1
        except BackendUnavailable as err:
            error = str(err)
        except Exception as err:  # never leave a caller waiting
            log.exception("exabgp send failed")
            error = f"internal error: {err}"
        finally:
            self.turn.release()
        if error:
            self.last_error = error
            log.warning("exabgp %s prefixes=%d error=%r", command.verb.value, len(batch), error)
        for item in batch:
            if not item.done.done():
                item.done.set_result(error)

    def _fail_queued(self, error: str) -> None:
        while self.queue:
            item = self.queue.popleft()
            if not item.done.done():
                item.done.set_result(error)

    async def _exchange(self, link: _Link, line: str) -> _Reply:
        async with self.turn:
            return await self._command(link, line)

    async def _command(self, link: _Link, line: str) -> _Reply:
        """Send one command and wait for its ack; the caller holds a slot of `turn`."""
        if self.link is not link:
            raise BackendUnavailable("ExaBGP bridge disconnected")
        reply = _Reply()
        link.replies.append(reply)  # before the write, with no await between: replies pair in order
        link.writer.write(line.encode("ascii") + b"\n")
        self.counts["lines"] += 1
        try:
            await link.writer.drain()
            answer = await asyncio.wait_for(asyncio.shield(reply.ack), self.settings.ack_timeout)
        except TimeoutError:
            self.counts["timeouts"] += 1
            reply.ack.cancel()
            # the ack may still come and would answer the next command: start over on a new link
            self._drop(link, f"no ack from ExaBGP within {self.settings.ack_timeout:g} s")
            raise BackendUnavailable(f"no ack from ExaBGP within {self.settings.ack_timeout:g} s") from None
        except ConnectionError as err:
            self._drop(link, f"bridge write failed: {err}")
            raise BackendUnavailable("ExaBGP bridge disconnected") from None
        if answer != "done":
            raise _Refused(answer)
        self.last_error = ""  # ExaBGP answers again: an old error is no longer the state
        return reply

    # the bridge connection --------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = self.access.check(writer)
        if isinstance(peer, str):
            log.warning(kv("exabgp-bridge-refused", why=peer))
            writer.close()
            return
        try:
            hello = await asyncio.wait_for(reader.readline(), HELLO_TIMEOUT)
            info = json.loads(hello)["bridge"]
            if not isinstance(info, dict):
                raise TypeError("bridge hello is not an object")
        except (TimeoutError, ValueError, KeyError, TypeError, asyncio.LimitOverrunError) as err:
            log.warning("exabgp bridge refused: no valid hello (%s)", type(err).__name__)
            writer.close()
            return
        if self.link is not None:
            # The connected bridge wins: it goes away by itself when its ExaBGP does (EOF) or stops
            # answering (ack timeout), and a newcomer must never silently take its place.
            log.warning(kv("exabgp-bridge-refused", pid=peer[0], why="another bridge is connected",
                           connected_pid=self.link.hello.get("pid")))
            writer.close()
            return
        link = self.link = _Link(reader, writer, info)
        self.counts["connects"] += 1
        log.info("exabgp bridge connected pid=%s exabgp_pid=%s", info.get("pid"), info.get("exabgp_pid"))
        self._spawn(self._replay())
        try:
            await self._read(link)
        finally:
            if self.link is link:
                self._drop(link, "ExaBGP bridge disconnected")

    async def _read(self, link: _Link) -> None:
        while True:
            try:
                raw = await link.reader.readline()
            except (ValueError, asyncio.LimitOverrunError, ConnectionError):
                return
            if not raw.endswith(b"\n"):
                return
            line = raw.rstrip(b"\r\n").decode("ascii", "replace")
            if line.startswith("{"):
                self._event(line)
            elif line in ("done", "error"):
                if link.replies:
                    reply = link.replies.popleft()
                    if not reply.ack.done():
                        reply.ack.set_result(line)
            elif link.replies:
                reply = link.replies[0]
                if len(reply.output) < self.output_cap:
                    reply.output.append(line)
                else:
                    reply.overflow = True

    def _event(self, line: str) -> None:
        """A JSON message from ExaBGP: neighbor states are kept; a shutdown is logged."""
        try:
            event = json.loads(line)
            kind = event.get("type")
            if kind == "state":
                neighbor = event["neighbor"]
                address = Prefix.parse(str(neighbor["address"]["peer"])).address
                state, reason = str(neighbor["state"])[:32], str(neighbor.get("reason", ""))[:200]
                since = _event_time(event.get("time"))
            elif kind == "notification" and event.get("notification") == "shutdown":
                log.warning("exabgp shutting down: its routes go with it until it is back and replayed")
                return
            else:
                return
        except (ValueError, KeyError, TypeError, AttributeError):
            log.debug("exabgp event ignored: not understood")
            return
        if address not in self.peers and len(self.peers) >= MAX_PEERS:
            return
        previous = self.peers.get(address)
        if previous is None or previous.state != state:
            log.info("exabgp peer=%s state=%s%s", address, state, f" reason={reason!r}" if reason else "")
            self.peers[address] = PeerView(state, since, reason)

    async def _replay(self) -> None:
        if self.on_reset is not None:
            await self.on_reset()

    def _drop(self, link: _Link, why: str) -> None:
        if self.link is link:
            self.link = None
            self.last_error = why
            log.warning("exabgp bridge lost: %s", why)
            now = time.time()
            self.peers = {address: PeerView("unknown", now, why) for address in self.peers}
            if self.on_lost is not None:
                self.on_lost(why)
        link.close()
        self.work.set()  # the send loop fails what is queued

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class _Refused(Exception):
    """ExaBGP answered `error` (it gives no reason)."""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _event_time(value: object) -> float:
    """When ExaBGP saw the change (its events carry it; the bridge replays old ones on a reconnect)."""
    now = time.time()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= now + 60:
        return float(value)
    return now
