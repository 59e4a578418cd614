"""Kernel routes per second: the kernel backend against `ip -batch`, as ratios measured in the same run.

In a throw-away namespace, N IPv6 /128 blackholes (2001:db8:203::/48: the
documentation ranges hold too few IPv4 /32s), each repetition:

* baseline: `ip -batch` adding the N routes, then deleting them
* the backend object (KernelBackend): one announce of N prefixes, then one withdraw
* the backend called as the service calls it: N concurrent one-prefix announces, then withdraws
* through the API: N pipelined bans on one connection to `f2b-bgp serve`, then one `flush`

and once, on at most 2,000 routes, the old backend's way: one pyroute2 request per route.
Every figure is routes/s over the baseline's routes/s of the same repetition
(higher is better), min/median/max over the repetitions. The kernel's view is
checked after every step.

--profile: cProfile of one backend repetition (in this process) and of the
daemon during the API bans and flush; the top functions by own time.

Run as root: python3 bench/kernel_routes.py [N] [--profile]
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import json
import os
import pstats
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from pyroute2 import AsyncIPRoute, netns

sys.path.insert(0, str(Path(__file__).parents[1]))
from f2b_bgp.backends.kernel import KernelBackend  # noqa: E402  (run from a checkout)
from f2b_bgp.config import KernelConfig, RouteType  # noqa: E402
from f2b_bgp.model import Prefix  # noqa: E402
from report import figure  # noqa: E402  (bench/report.py)

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
PROFILE = "--profile" in sys.argv
N = int(ARGS[0]) if ARGS else 20000
REPS = 3
OLD_N = min(N, 2000)
# route protocols: the daemon's (201) reconcile removes stale routes of its own, so the others use theirs
IP_BATCH_PROTO, BACKEND_PROTO = 202, 203
CONFIG = KernelConfig(True, RouteType.BLACKHOLE, 254, BACKEND_PROTO, 0)
DAEMON_CONFIG = """
[daemon]
socket = "{dir}/api.sock"
database = "{dir}/state.db"
[guards]
protected = ["198.51.100.0/24"]
allow_special = ["2001:db8:203::/48"]
max_routes = {n}
max_rate = {n}
[bgp]
prefix_limit = {n}  # guards.max_routes may not exceed it
"""
API_TIMEOUT = 300.0  # seconds for one pipelined run or flush


def prefixes(count: int) -> list[Prefix]:
    return [Prefix.parse(f"2001:db8:203:{i >> 16:x}::{i & 0xFFFF:x}/128") for i in range(count)]


class Lab:
    """The throw-away namespace and how to look into it."""

    def __init__(self) -> None:
        self.ns = "f2bbench" + secrets.token_hex(3)

    def __enter__(self) -> Lab:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc: object) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], check=False)

    def count(self) -> int:
        """Blackholes of any protocol: each step starts from none."""
        out = subprocess.run(["ip", "-n", self.ns, "-6", "route", "show", "type", "blackhole"], capture_output=True,
                             text=True, check=True).stdout
        return out.count("\n")

    def expect(self, count: int, what: str) -> None:
        held = self.count()
        if held != count:
            raise SystemExit(f"{what}: the kernel holds {held} blackholes, expected {count}")

    def ip_batch(self, verb: str, nets: list[Prefix]) -> float:
        kind = "blackhole " if verb == "add" else ""
        script = "".join(f"route {verb} {kind}{p} proto {IP_BATCH_PROTO}\n" for p in nets)
        start = time.perf_counter()
        subprocess.run(["ip", "-n", self.ns, "-batch", "-"], input=script, text=True, check=True)
        return time.perf_counter() - start

    def inside(self, work: Callable[[], Awaitable[dict[str, float]]]) -> dict[str, float]:
        """Run work() with every socket it opens in the namespace."""
        netns.pushns(self.ns)
        try:
            return asyncio.run(work())
        finally:
            netns.popns()


async def timed(step: Awaitable[object]) -> float:
    start = time.perf_counter()
    failures = await step
    elapsed = time.perf_counter() - start
    bad = [f for f in failures if f] if isinstance(failures, list) else failures
    if bad:
        raise SystemExit(f"backend failures: {str(bad)[:300]}")
    return elapsed


def backend_rep(lab: Lab, nets: list[Prefix]) -> dict[str, float]:
    async def work() -> dict[str, float]:
        backend = KernelBackend(CONFIG)
        await backend.start()
        try:
            seconds = {"backend, one call: add": await timed(backend.announce(nets))}
            lab.expect(len(nets), "after one announce")
            seconds["backend, one call: delete"] = await timed(backend.withdraw(nets))
            lab.expect(0, "after one withdraw")
            seconds["backend, a call per route: add"] = await timed(
                asyncio.gather(*(backend.announce([p]) for p in nets)))
            lab.expect(len(nets), "after concurrent announces")
            seconds["backend, a call per route: delete"] = await timed(
                asyncio.gather(*(backend.withdraw([p]) for p in nets)))
            lab.expect(0, "after concurrent withdraws")
            return seconds
        finally:
            await backend.stop()
    return lab.inside(work)


def old_backend(lab: Lab, nets: list[Prefix]) -> dict[str, float]:
    """The kernel backend before issue 14: one pyroute2 request per route."""
    async def work() -> dict[str, float]:
        ipr = AsyncIPRoute()
        await ipr.setup_endpoint()
        try:
            seconds = {}
            for verb, extra in (("replace", {"type": "blackhole"}), ("del", {})):
                start = time.perf_counter()
                for p in nets:
                    await ipr.route(verb, dst=str(p), proto=BACKEND_PROTO, table=254, **extra)
                seconds[verb] = time.perf_counter() - start
            return seconds
        finally:
            ipr.close()
    return lab.inside(work)


def pipelined(path: Path, requests: list[dict]) -> float:
    """Send every request at once (a thread writes while we read) and wait for every answer."""
    payload = b"".join(json.dumps(r).encode() + b"\n" for r in requests)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(API_TIMEOUT)
        sock.connect(str(path))
        start = time.perf_counter()
        writer = threading.Thread(target=sock.sendall, args=(payload,), daemon=True)
        writer.start()
        lines, data = 0, bytearray()
        while lines < len(requests):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("the daemon closed the connection")
            lines += chunk.count(b"\n")
            data += chunk
        elapsed = time.perf_counter() - start
        writer.join(API_TIMEOUT)
    bad = [line for line in data.splitlines() if b'"ok": true' not in line and b'"ok":true' not in line]
    if bad:
        raise SystemExit(f"{len(bad)} requests failed, first: {bad[0][:200]!r}")
    return elapsed


class Daemon:
    """`f2b-bgp serve` in the namespace (under cProfile with --profile), stopped by its PID."""

    def __init__(self, lab: Lab, capacity: int) -> None:
        self.work = Path(tempfile.mkdtemp(prefix="f2b-bench-kernel-"))
        (self.work / "c.toml").write_text(DAEMON_CONFIG.format(dir=self.work, n=capacity))
        self.socket, self.profile = self.work / "api.sock", self.work / "daemon.prof"
        profiler = ["-m", "cProfile", "-o", str(self.profile)] if PROFILE else []
        self.proc = subprocess.Popen(["ip", "netns", "exec", lab.ns, sys.executable, *profiler, "-m", "f2b_bgp",
                                      "--config", str(self.work / "c.toml"), "serve"], stderr=subprocess.DEVNULL,
                                     cwd=Path(__file__).parents[1])
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("the daemon did not create its socket within 30 s")
            time.sleep(0.05)

    def rep(self, lab: Lab, nets: list[Prefix]) -> dict[str, float]:
        bans = [{"op": "ban", "prefix": p.address, "jail": "bench"} for p in nets]
        seconds = {"API, pipelined bans: add": pipelined(self.socket, bans)}
        lab.expect(len(nets), "after the bans")
        seconds["API, one flush: delete"] = pipelined(self.socket, [{"op": "flush"}])
        lab.expect(0, "after the flush")
        return seconds

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def remove(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def top(stats: pstats.Stats, title: str, lines: int = 14) -> None:
    """The functions with the most own time, then f2b-bgp's own by cumulative time."""
    for order, restriction in (("tottime", ()), ("cumulative", ("f2b_bgp",))):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(order).print_stats(*restriction, lines)
        body = out.getvalue()
        print(f"\n--- profile: {title}, by {order} {' '.join(restriction)} ---\n{body[body.find('ncalls'):].rstrip()}")


def spread(values: list[float]) -> str:
    return f"{min(values):6.3f} {statistics.median(values):6.3f} {max(values):6.3f}"


def main() -> None:
    nets = prefixes(N)
    ratios: dict[str, list[float]] = {}
    route_rates: dict[str, list[float]] = {}
    baseline: dict[str, list[float]] = {"add": [], "delete": []}
    with Lab() as lab:
        daemon = Daemon(lab, N * REPS)
        try:
            for _ in range(REPS):
                base = {"add": lab.ip_batch("add", nets)}
                lab.expect(N, "after ip -batch add")
                base["delete"] = lab.ip_batch("del", nets)
                lab.expect(0, "after ip -batch del")
                for verb, seconds in base.items():
                    baseline[verb].append(N / seconds)
                for name, seconds in {**backend_rep(lab, nets), **daemon.rep(lab, nets)}.items():
                    ratios.setdefault(name, []).append(base[name.rsplit(": ", 1)[1]] / seconds)
                    route_rates.setdefault(name, []).append(N / seconds)
            old = old_backend(lab, nets[:OLD_N])
            lab.expect(0, "after the old backend's deletes")
            if PROFILE:
                profiler = cProfile.Profile()
                profiler.enable()
                backend_rep(lab, nets)
                profiler.disable()
        finally:
            daemon.stop()
        try:
            print(f"kernel routes: {N} IPv6 /128 blackholes in a namespace, {REPS} repetitions; "
                  f"ratio = routes/s over ip -batch's routes/s in the same repetition (higher is better)")
            print(f"{'':40s} {'min':>6s} {'median':>6s} {'max':>6s}")
            for verb, rates in baseline.items():
                print(f"{'ip -batch: ' + verb:40s} 1.000 (routes/s: {min(rates):,.0f} {statistics.median(rates):,.0f} "
                      f"{max(rates):,.0f})")
            for name, values in ratios.items():
                print(f"{name:40s} {spread(values)}")
                verb = name.rsplit(": ", 1)[1]
                figure(f"kernel routes, {N:,} routes", name, route_rates[name], baseline[verb], "routes/s",
                       base=f"ip -batch: {verb}", target=">= 0.5" if verb == "add" else "", higher_is_better=True)
            last = {verb: rates[-1] for verb, rates in baseline.items()}
            for verb, seconds in old.items():
                name = "add" if verb == "replace" else "delete"
                print(f"{'old backend, pyroute2 per route: ' + name:40s} {OLD_N / seconds / last[name]:6.3f} "
                      f"({OLD_N} routes, against the last repetition's ip -batch)")
                figure(f"kernel routes, {N:,} routes", f"old backend, pyroute2 per route: {name} ({OLD_N} routes)",
                       OLD_N / seconds, last[name], "routes/s", base=f"ip -batch: {name}", higher_is_better=True)
            if PROFILE:
                top(pstats.Stats(profiler), "one backend repetition, in this process")
                top(pstats.Stats(str(daemon.profile)), f"the daemon over {REPS} x ({N} bans + flush)")
        finally:
            daemon.remove()


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: routes are written in a throw-away namespace")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the with-blocks' cleanup
    main()
