"""The bridge between ExaBGP's pipes and the daemon's socket: real pipes, a real Unix socket, no ExaBGP."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from f2b_bgp.exabgp_bridge import Bridge

COMMAND = b"announce attributes next-hop 198.51.100.2 community [65535:666] nlri 203.0.113.5/32"
STATE_UP = (b'{ "exabgp": "5.0.0", "type": "state", "neighbor": { "address": { "local": "198.51.100.2", '
            b'"peer": "198.51.100.1" }, "state": "up" } }')


class Harness:
    """The bridge in a thread; the test plays ExaBGP (two pipes) and the daemon (a listening socket)."""

    def __init__(self, tmp: Path) -> None:
        self.path = str(tmp / "bridge.sock")
        acks_r, self.acks_w = os.pipe()
        commands_r, commands_w = os.pipe()
        self.commands = os.fdopen(commands_r, "rb")
        self.bridge = Bridge(self.path, os.fdopen(acks_r, "rb"), os.fdopen(commands_w, "wb"), io.BytesIO())
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.settimeout(10)
        self.result: list[int] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.bridge.run()), daemon=True)

    def exabgp_says(self, line: bytes) -> None:
        os.write(self.acks_w, line + b"\n")

    def exabgp_reads(self) -> bytes:
        return self.commands.readline().rstrip(b"\n")

    def listen(self) -> None:
        self.listener.bind(self.path)
        self.listener.listen()

    def accept(self) -> tuple[socket.socket, Iterator[bytes]]:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        return conn, (line.rstrip(b"\n") for line in conn.makefile("rb"))

    def connected(self) -> tuple[socket.socket, Iterator[bytes]]:
        """The daemon's side of the bridge's first connection, past the hello line."""
        self.listen()
        conn, lines = self.accept()
        next(lines)
        return conn, lines

    def command_reaches_exabgp(self, conn: socket.socket) -> None:
        conn.sendall(COMMAND + b"\n")
        assert self.exabgp_reads() == COMMAND

    def close(self) -> None:
        if self.acks_w >= 0:
            os.close(self.acks_w)  # ExaBGP went away: the bridge must end
            self.acks_w = -1
        self.thread.join(10)
        self.listener.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    h.thread.start()
    yield h
    h.close()


def test_hello_then_neighbor_states_seen_before_the_daemon_came(harness: Harness) -> None:
    harness.exabgp_says(STATE_UP)  # ExaBGP talks before any daemon listens
    harness.listen()
    conn, lines = harness.accept()
    hello = json.loads(next(lines))
    assert hello["bridge"]["pid"] == os.getpid()
    assert next(lines) == STATE_UP  # a whole line of its own, not glued to the next one
    harness.command_reaches_exabgp(conn)
    harness.exabgp_says(b"done")
    assert next(lines) == b"done"


def test_a_line_that_is_not_our_command_never_reaches_exabgp(harness: Harness) -> None:
    conn, lines = harness.connected()
    for hostile in (b"shutdown", b"announce route 203.0.113.5/32 next-hop self\x00; rm -rf /", "announce attributes é".encode()):
        conn.sendall(hostile + b"\n")
        assert next(lines) == b"error"
    harness.command_reaches_exabgp(conn)  # the first line ExaBGP got is the valid one


def test_the_ack_of_a_closed_connection_does_not_answer_the_next_one(harness: Harness) -> None:
    conn, lines = harness.connected()
    harness.command_reaches_exabgp(conn)
    conn.shutdown(socket.SHUT_RDWR)  # the daemon gave up on it (ack timeout); the bridge reconnects
    conn2, lines2 = harness.accept()
    next(lines2)
    harness.exabgp_says(b"done")  # the late ack of the first connection's command
    harness.command_reaches_exabgp(conn2)
    harness.exabgp_says(b"error")
    assert next(lines2) == b"error"


def test_the_show_output_of_a_closed_connection_does_not_reach_the_next_one(harness: Harness) -> None:
    conn, _ = harness.connected()
    conn.sendall(b"show adj-rib out\n")
    assert harness.exabgp_reads() == b"show adj-rib out"
    conn.shutdown(socket.SHUT_RDWR)
    conn2, lines2 = harness.accept()
    next(lines2)
    harness.exabgp_says(b"neighbor 198.51.100.1 ipv4 unicast 203.0.113.5/32 next-hop 198.51.100.2")  # late output
    harness.exabgp_says(b"done")
    harness.command_reaches_exabgp(conn2)
    harness.exabgp_says(b"done")
    assert next(lines2) == b"done"  # the first line the new connection gets is its own ack


def test_the_bridge_ends_when_exabgp_closes_its_stdin(harness: Harness) -> None:
    harness.close()
    assert not harness.thread.is_alive() and harness.result == [0]
