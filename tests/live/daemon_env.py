"""A namespace and an f2b-bgp daemon inside it, for the live tests of the daemon itself."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll predicate until it returns something truthy; fail naming what and the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last value: {value!r}")
        time.sleep(interval)


class Namespace:
    """A throw-away network namespace with a unique name, removed even when the test fails."""

    def __init__(self, role: str, tag: str = "") -> None:
        self.name = f"f2b{tag or secrets.token_hex(3)}-{role}"[:15]

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run(["ip", "link", "set", "lo", "up"])
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check, capture_output=True,
                              text=True, timeout=60)


def kernel_routes(ns: Namespace, protocol: int | None = None) -> dict[str, str]:
    """prefix -> route type for IPv4 and IPv6 routes in the main table (optionally of one protocol)."""
    found = {}
    for family in ("-4", "-6"):
        argv = ["ip", "-j", family, "route", "show", "table", "main"] + (["proto", str(protocol)] if protocol else [])
        for route in json.loads(ns.run(argv).stdout or "[]"):
            dst = route["dst"]
            if "/" not in dst:
                dst += "/32" if family == "-4" else "/128"
            found[dst] = route.get("type", "unicast")
    return found


class F2bBgpDaemon:
    """`f2b-bgp serve` in the foreground inside a namespace; stopped by its PID."""

    def __init__(self, ns: Namespace, config: Path, socket: Path, log: Path) -> None:
        self.ns, self.config, self.socket, self.log = ns, config, socket, log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> F2bBgpDaemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns.name, sys.executable, "-m", "f2b_bgp", "--config", str(self.config), "serve"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        wait_until(lambda: self._ready(), 20, f"f2b-bgp daemon ready (log {self.log})")

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"f2b-bgp exited with {self.proc.returncode}:\n{self.log.read_text()[-2000:]}")
        return self.socket.exists() and "ready socket=" in self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)  # `ip netns exec` execs, so this is the daemon's own PID
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        from f2b_bgp.client import Client

        with Client(str(self.socket)) as client:
            return client.call(op, **fields)
