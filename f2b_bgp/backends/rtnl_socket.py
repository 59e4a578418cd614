"""One non-blocking NETLINK_ROUTE socket: many requests per send, their acks matched by sequence number.

The kernel handles a send's messages in order, each on its own, before the
send returns, and queues one ack per message (NLM_F_ACK), so an error in one
leaves the others applied. An ack lost to a full receive buffer (ENOBUFS) only
says the kernel did the work without telling us: the requests still unanswered
are sent again, which is safe because every request we make is idempotent.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import socket
from collections.abc import Callable, Sequence

from .rtnl_route import Ack, parse_acks

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK, NETLINK_EXT_ACK = 10, 11
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # <asm-generic/socket.h>; not in Python's socket module
BUFFER = 8 << 20  # bytes; a send's acks (~1 KiB each, counted by the kernel) must fit in the receive buffer
RECV_SIZE = 1 << 16


class RouteSocket:
    def __init__(self, ack_timeout: float = 10.0, socket_buffer: int = BUFFER) -> None:
        self.ack_timeout = ack_timeout
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        try:
            self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # acks without a copy of the request
            self.sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # with the kernel's reason for an error
            for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, force, socket_buffer)
                except PermissionError:  # without CAP_NET_ADMIN: as much as net.core.*mem_max allows
                    self.sock.setsockopt(socket.SOL_SOCKET, plain, socket_buffer)
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise
        self.buffer = bytearray(RECV_SIZE)
        self._seq = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self.counts = {"sends": 0, "messages": 0, "resends": 0}

    def close(self) -> None:
        self.sock.close()

    def next_seq(self) -> int:
        return next(self._seq) & 0xFFFFFFFF

    async def exchange(self, requests: Sequence[tuple[int, bytes]]) -> dict[int, Ack]:
        """Send (seq, message) pairs in one send; return seq -> ack for each.

        Requests whose acks were lost (ENOBUFS) go again while each round gets
        some answered; one whose ack never came gets errno ETIMEDOUT.
        """
        acks: dict[int, Ack] = {}
        unanswered = list(requests)
        while unanswered:
            self.sock.send(b"".join(message for _, message in unanswered))
            self.counts["sends"] += 1
            self.counts["messages"] += len(unanswered)
            lost = await self._collect({seq for seq, _ in unanswered}, acks)
            still = [(seq, message) for seq, message in unanswered if seq not in acks]
            if not lost or len(still) == len(unanswered):
                break
            self.counts["resends"] += len(still)
            unanswered = still
        for seq, _ in requests:
            acks.setdefault(seq, Ack(seq, errno.ETIMEDOUT, "no netlink ack"))
        return acks

    async def _collect(self, wanted: set[int], acks: dict[int, Ack]) -> bool:
        """Read acks until each wanted seq has one; True when some were lost (ENOBUFS) and must be asked again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ack_timeout
        lost = False
        while wanted:
            try:
                size = self.sock.recv_into(self.buffer)
            except BlockingIOError:
                if lost:
                    return True  # the queue is drained: what is missing was dropped
                if not await self._readable(deadline - loop.time()):
                    return False
                continue
            except OSError as err:
                if err.errno != errno.ENOBUFS:
                    raise
                lost = True
                continue
            for ack in parse_acks(self.buffer, size):
                if ack.seq in wanted:
                    wanted.discard(ack.seq)
                    acks[ack.seq] = ack
        return False

    async def _readable(self, timeout: float) -> bool:
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self.sock.fileno(), _resolve(ready))
        try:
            await asyncio.wait_for(ready, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            loop.remove_reader(self.sock.fileno())


def _resolve(future: asyncio.Future[None]) -> Callable[[], None]:
    def done() -> None:
        if not future.done():
            future.set_result(None)
    return done
