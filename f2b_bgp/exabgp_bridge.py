"""`f2b-bgp exabgp-bridge`: started by ExaBGP's process block, relays between ExaBGP and the daemon.

ExaBGP -> bridge (stdin): acks (`done`/`error`), `show` output, JSON events.
bridge -> ExaBGP (stdout): the daemon's command lines.
bridge <-> daemon: a Unix socket; the bridge sends a hello line first, then the
last state of every neighbor, then relays.

What ExaBGP needs from its helper (notes/exabgp-api.md section 6): stdin is
read all the time, even with no daemon connected (a helper that stops reading
freezes ExaBGP after ~12k acks); the bridge never exits while ExaBGP runs (5
deaths in ~64 s make ExaBGP shut down and every route go); only printable
ASCII reaches ExaBGP. Acks are counted, so the acks of commands sent for a
connection that closed are dropped instead of answering the next one's.

Standard library only (and the package version): it must start fast and stay small.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from typing import BinaryIO

from . import __version__
from .backends.exabgp_lines import COMMAND

ACKS = (b"done", b"error")
MAX_LINE = 1 << 20  # ExaBGP kills a helper whose line reaches 1 MiB
RETRY_MAX = 5.0


class Bridge:
    def __init__(self, path: str, exabgp_in: BinaryIO, exabgp_out: BinaryIO, log: BinaryIO) -> None:
        self.path, self.exabgp_in, self.exabgp_out, self.log = path, exabgp_in, exabgp_out, log
        self.lock = threading.Lock()
        self.conn: socket.socket | None = None
        self.unacked = 0  # commands of the current connection whose ack has not come yet
        self.orphaned = 0  # acks still due for a closed connection's commands: dropped
        self.states: dict[str, bytes] = {}  # peer address -> its last state event, a whole line
        self.exabgp_gone = threading.Event()
        self.hello = json.dumps({"bridge": {"pid": os.getpid(), "exabgp_pid": os.getppid(), "started": time.time(),
                                            "version": __version__}}).encode() + b"\n"

    # ExaBGP -> daemon (a thread of its own, never blocked by the daemon) -----------------------------

    def read_exabgp(self) -> None:
        try:
            for raw in self.exabgp_in:
                self._from_exabgp(raw.rstrip(b"\r\n"))
        finally:
            self.exabgp_gone.set()
            with self.lock:
                self._drop_connection()

    def _from_exabgp(self, line: bytes) -> None:
        with self.lock:
            if line.startswith(b"{"):
                self._remember_state(line)
            elif self.orphaned:
                # an old connection's ack, or output of its `show`: nobody waits for it
                if line in ACKS:
                    self.orphaned -= 1
                return
            elif line in ACKS:
                if not self.unacked:
                    self._say(f"unexpected ack {line.decode()!r} dropped")
                    return
                self.unacked -= 1
            self._to_daemon(line + b"\n")

    def _remember_state(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            if event.get("type") == "state":
                self.states[str(event["neighbor"]["address"]["peer"])] = line + b"\n"
        except (ValueError, KeyError, TypeError, AttributeError):
            pass  # relayed as is; the daemon validates what it reads

    def _to_daemon(self, data: bytes) -> None:
        if self.conn is None:
            return
        try:
            self.conn.sendall(data)
        except OSError:
            self._drop_connection()

    def _drop_connection(self) -> None:
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.conn = None
        self.orphaned += self.unacked
        self.unacked = 0

    # daemon -> ExaBGP (the main thread) ---------------------------------------------------------------

    def run(self) -> int:
        reader = threading.Thread(target=self.read_exabgp, name="exabgp-stdin", daemon=True)
        reader.start()
        delay = 0.2
        while not self.exabgp_gone.is_set():
            conn = self._connect()
            if conn is None:
                self.exabgp_gone.wait(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = 0.2
            self._relay_daemon(conn)
            conn.close()
            if not self.exabgp_gone.is_set():
                self._say("daemon connection closed; reconnecting")
        return 0

    def _connect(self) -> socket.socket | None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
            with self.lock:
                conn.sendall(self.hello + b"".join(self.states.values()))
                self.conn = conn
        except OSError as err:
            conn.close()
            if err.errno not in (2, 111):  # ENOENT, ECONNREFUSED: the daemon is not up yet
                self._say(f"cannot connect to {self.path}: {err}")
            return None
        self._say(f"connected to {self.path}")
        return conn

    def _relay_daemon(self, conn: socket.socket) -> None:
        stream = conn.makefile("rb")
        try:
            while True:
                line = stream.readline(MAX_LINE)
                if not line.endswith(b"\n"):
                    return  # closed, or a line too long: start again on a fresh connection
                command = line.rstrip(b"\n")
                with self.lock:
                    if self.conn is not conn:
                        return
                    if not COMMAND.fullmatch(command):
                        self._say("refused a line that is not an f2b-bgp command")
                        self._to_daemon(b"error\n")
                        continue
                    self.unacked += 1
                self.exabgp_out.write(command + b"\n")
                self.exabgp_out.flush()
        except OSError:
            return
        finally:
            with self.lock:
                if self.conn is conn:
                    self._drop_connection()

    def _say(self, text: str) -> None:
        self.log.write(f"f2b-bgp exabgp-bridge[{os.getpid()}]: {text}\n".encode())
        self.log.flush()


def main(path: str) -> int:
    return Bridge(path, sys.stdin.buffer, sys.stdout.buffer, sys.stderr.buffer).run()
