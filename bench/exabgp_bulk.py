"""Bulk end to end through ExaBGP: N bans until all are in an FRR firewall's RIB, then `flush` until none are,
with the ExaBGP backend, with both backends at once, and the replay after an ExaBGP restart.

The lab of bench/bulk.py (the firewall's FRR rendered from the reference config
with maximum-prefix raised to 2N, the injector's FRR from frr-examples/injector)
with ExaBGP 5 next to FRR on the injector: on a second injector address,
198.51.100.3, since FRR's bgpd holds 198.51.100.2 (started with `-l
198.51.100.2` so that ExaBGP can listen on .3, as exabgp.env has it). The
firewall gets the same neighbor lines for .3 as for .2, nothing else changes.
Each repetition, the same N IPv6 /128s (2001:db8:203::/48):

* baseline: a raw ExaBGP (the lab's minimal config, the shipped exabgp.env; its
  API process follows a file) given N/500 lines `announce attributes next-hop
  2001:db8:1::2 community [65535:666] nlri P1 .. P500` at once, until the
  firewall holds N from .3; then the same lines as `withdraw`, until none
* f2b-bgp with the ExaBGP backend (ExaBGP from the files `f2b-bgp peering
  exabgp` renders, the bridge program a wrapper running this checkout): N
  pipelined bans on one API connection until the firewall holds N; then the
  replay: kill -9 ExaBGP (its PID), start it again, and time from the start
  until the firewall holds N again, against that first announcement; then one
  `flush` until none
* both backends: `ip -batch` + raw ExaBGP at once (baseline) against f2b-bgp
  with the kernel and ExaBGP backends: until the firewall holds N from each of
  .2 (the injector's FRR, `redistribute kernel`) and .3 (ExaBGP); then none

The firewall's count per neighbor is its accepted prefixes (`show bgp ipv6
unicast summary json`, pfxRcd), polled every POLL seconds; every wait is bounded
by WAIT seconds. A figure is f2b-bgp's time over its baseline's in the same
repetition (lower is better), min/median/max; the targets are issue 14's.

Run as root: python3 bench/exabgp_bulk.py [N [REPS]]   (default 10000 1; make bench-full: 100000 3)
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]
from bulk import (EXAMPLES, LIMIT, POLL, REPS, WAIT, ZEBRA_ARGS, N, firewall_files, ip_batch,  # noqa: E402  (siblings;
                  prefixes, spread)  # the same N REPS arguments)
from f2b_bgp.config import load_config  # noqa: E402  (run from a checkout)
from kernel_routes import pipelined  # noqa: E402
from report import figure  # noqa: E402
from tests.lab.exabgp import Exabgp, exabgp_config, with_bridge_program  # noqa: E402
from tests.lab.f2bbgp import F2bBgp, exabgp_tables, lab_config  # noqa: E402
from tests.lab.frr import Frr  # noqa: E402
from tests.lab.netns import HOSTS, Topology  # noqa: E402
from tests.lab.wait import wait_until  # noqa: E402

FIREWALL, FRR_SIDE = HOSTS["firewall"]["4"], HOSTS["injector"]["4"]
EXABGP_SIDE = "198.51.100.3"  # ExaBGP's injector address: FRR's bgpd holds .2
EXABGP_DIR = ROOT / "exabgp"
RAW_BATCH = 500  # prefixes per line of the raw ExaBGP
ATTRIBUTES = "next-hop 2001:db8:1::2 community [65535:666]"  # what the daemon sends for IPv6 (exabgp_tables)
EXABGP_ENV = {"exabgp_daemon_user": "root", "exabgp_log_destination": "stdout"}  # as tests/live/test_exabgp.py


# --- the firewall's view ------------------------------------------------------------------------------

def firewall_with_two_injectors(work: Path) -> dict[str, Path]:
    """bench/bulk.py's firewall files, with every neighbor line for .2 repeated for .3 (ExaBGP)."""
    files = firewall_files(work, LIMIT)
    lines = []
    for line in files["bgpd"].read_text().splitlines():
        lines.append(line)
        if f"neighbor {FRR_SIDE} " in line:
            lines.append(line.replace(f"neighbor {FRR_SIDE} ", f"neighbor {EXABGP_SIDE} "))
    files["bgpd"].write_text("\n".join(lines) + "\n")
    return files


def held(firewall: Frr) -> dict[str, int]:
    """Accepted IPv6 prefixes per injector address; -1 while its session is not established."""
    peers = firewall.vtysh_json("show bgp ipv6 unicast summary json").get("peers", {})
    return {address: int(peers[address].get("pfxRcd", 0)) if peers.get(address, {}).get("state") == "Established"
            else -1 for address in (FRR_SIDE, EXABGP_SIDE)}


def until(firewall: Frr, want: dict[str, int], start: float, what: str) -> float:
    """Seconds from start until the firewall holds exactly `want` prefixes from each address (bounded by WAIT)."""
    while any((now := held(firewall))[address] != count for address, count in want.items()):
        if time.perf_counter() - start > WAIT:
            raise SystemExit(f"{what}: after {WAIT:g} s the firewall holds {now}, expected {want}")
        time.sleep(POLL)
    return time.perf_counter() - start


def up(firewall: Frr, *addresses: str) -> None:
    wait_until(lambda: all(held(firewall)[a] >= 0 for a in addresses), 60, f"sessions from {addresses} up",
               interval=POLL)


# --- ExaBGP, raw and driven by the daemon ----------------------------------------------------------

def raw_lines(verb: str, nets: list[str]) -> list[str]:
    return [f"{verb} attributes {ATTRIBUTES} nlri " + " ".join(f"{p}/128" for p in nets[i:i + RAW_BATCH])
            for i in range(0, len(nets), RAW_BATCH)]


@contextmanager
def raw_exabgp(topo: Topology, firewall: Frr) -> Iterator[Exabgp]:
    """A raw ExaBGP on .3, its session with the firewall up; exabgp.send() feeds its API process."""
    with tempfile.TemporaryDirectory(prefix="f2b-bench-raw-exabgp-") as work:
        config = exabgp_config(Path(work), FIREWALL, EXABGP_SIDE, EXABGP_SIDE, 65001, 65000)
        with Exabgp(topo.ns("injector"), config, listen=EXABGP_SIDE, workdir=Path(work), env=EXABGP_ENV,
                    env_file=EXABGP_DIR / "exabgp.env") as exabgp:
            up(firewall, EXABGP_SIDE)
            yield exabgp


def daemon_config(kernel: bool) -> str:
    return lab_config(guards=f"max_routes = {N}\nmax_rate = {N}", retry_interval=5.0,  # as bench/bulk.py
                      rest=exabgp_tables(kernel, bgp=f"prefix_limit = {LIMIT}", local_address=EXABGP_SIDE))


def rendered_exabgp(daemon: F2bBgp) -> Path:
    """exabgp.conf and exabgp.env as `f2b-bgp peering exabgp` renders them for the daemon's config, in its
    work dir, the bridge program replaced by a wrapper running this checkout."""
    subprocess.run([sys.executable, "-m", "f2b_bgp", "--config", str(daemon.config), "peering", "exabgp",
                    "--output-dir", str(daemon.workdir)], check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    program = str(load_config(daemon.config).exabgp.bridge_program)
    return with_bridge_program(daemon.workdir / "exabgp.conf", daemon.workdir, program)


def bridge_ready(daemon: F2bBgp) -> bool:
    return bool(daemon.call("status")["backends"]["exabgp"]["ready"])


@contextmanager
def f2b_bgp(topo: Topology, firewall: Frr, kernel: bool) -> Iterator[tuple[F2bBgp, Exabgp]]:
    """The daemon (ExaBGP backend, and the kernel backend if asked) and its ExaBGP on .3, connected."""
    with ExitStack() as stack:
        daemon = stack.enter_context(F2bBgp(topo.ns("injector"), daemon_config(kernel)))
        exabgp = stack.enter_context(Exabgp(topo.ns("injector"), rendered_exabgp(daemon), listen=EXABGP_SIDE,
                                            workdir=daemon.workdir, env=EXABGP_ENV,
                                            env_file=daemon.workdir / "exabgp.env"))
        wait_until(lambda: bridge_ready(daemon), 30, "the bridge connected", interval=POLL)
        up(firewall, EXABGP_SIDE)
        yield daemon, exabgp


# --- one repetition -------------------------------------------------------------------------------

class Repetition:
    def __init__(self, topo: Topology, firewall: Frr, nets: list[str]) -> None:
        self.topo, self.firewall, self.nets = topo, firewall, nets
        self.bans = [{"op": "ban", "prefix": p, "jail": "bench"} for p in nets]
        self.seconds: dict[str, float] = {}

    def note(self, name: str, seconds: float) -> None:
        self.seconds[name] = seconds
        print(f"  {name}: {seconds:.2f} s", flush=True)  # a 100,000 run takes minutes: show each step

    def timed(self, name: str, want: dict[str, int], start: float) -> None:
        self.note(name, until(self.firewall, want, start, name))

    def raw(self) -> None:
        with raw_exabgp(self.topo, self.firewall) as exabgp:
            start = time.perf_counter()
            exabgp.send(*raw_lines("announce", self.nets))
            self.timed("raw ExaBGP: add", {EXABGP_SIDE: N}, start)
            start = time.perf_counter()
            exabgp.send(*raw_lines("withdraw", self.nets))
            self.timed("raw ExaBGP: delete", {EXABGP_SIDE: 0}, start)

    def exabgp_backend(self) -> None:
        with f2b_bgp(self.topo, self.firewall, kernel=False) as (daemon, exabgp):
            self.ban_and_flush(daemon, "f2b-bgp ExaBGP", {EXABGP_SIDE: N}, lambda: self.replay(daemon, exabgp))

    def both_raw(self) -> None:
        with raw_exabgp(self.topo, self.firewall) as exabgp:
            start = time.perf_counter()
            exabgp.send(*raw_lines("announce", self.nets))  # ExaBGP reads them while ip -batch runs
            ip_batch(self.topo, "add", self.nets)
            self.timed("ip -batch + raw ExaBGP: add", {FRR_SIDE: N, EXABGP_SIDE: N}, start)
            start = time.perf_counter()
            exabgp.send(*raw_lines("withdraw", self.nets))
            ip_batch(self.topo, "del", self.nets)
            self.timed("ip -batch + raw ExaBGP: delete", {FRR_SIDE: 0, EXABGP_SIDE: 0}, start)

    def both_backends(self) -> None:
        with f2b_bgp(self.topo, self.firewall, kernel=True) as (daemon, _):
            self.ban_and_flush(daemon, "f2b-bgp kernel + ExaBGP", {FRR_SIDE: N, EXABGP_SIDE: N})

    def ban_and_flush(self, daemon: F2bBgp, name: str, want: dict[str, int],
                      between: Callable[[], None] = lambda: None) -> None:
        start = time.perf_counter()
        self.note(f"{name}: API answered all bans", pipelined(daemon.socket, self.bans))
        self.timed(f"{name}: add", want, start)
        between()
        start = time.perf_counter()
        self.note(f"{name}: API answered the flush", pipelined(daemon.socket, [{"op": "flush"}]))
        self.timed(f"{name}: delete", {address: 0 for address in want}, start)

    def replay(self, daemon: F2bBgp, exabgp: Exabgp) -> None:
        """kill -9 ExaBGP by its PID; once the firewall and the daemon noticed, start it and time the replay."""
        exabgp.processes[-1].kill(signal.SIGKILL)
        wait_until(lambda: held(self.firewall)[EXABGP_SIDE] < 0 and not bridge_ready(daemon), 30,
                   "the session and the bridge gone", interval=POLL)
        start = time.perf_counter()
        exabgp.restart()  # returns once ExaBGP listens
        up(self.firewall, EXABGP_SIDE)
        self.note("replay: ExaBGP listening, session up", time.perf_counter() - start)
        self.timed("replay after kill -9 of ExaBGP", {EXABGP_SIDE: N}, start)


# --- the report -------------------------------------------------------------------------------------

# group: its baselines, then (figure, its baseline, target)
ROWS = {
    "ExaBGP backend": (["raw ExaBGP: add", "raw ExaBGP: delete"], [
        ("f2b-bgp ExaBGP: add", "raw ExaBGP: add", "<= 1.1"),
        ("f2b-bgp ExaBGP: API answered all bans", "raw ExaBGP: add", ""),
        ("f2b-bgp ExaBGP: delete", "raw ExaBGP: delete", "<= 1.1"),
        ("f2b-bgp ExaBGP: API answered the flush", "raw ExaBGP: delete", ""),
        ("replay after kill -9 of ExaBGP", "f2b-bgp ExaBGP: add", "<= 1.5"),
        ("replay: ExaBGP listening, session up", "f2b-bgp ExaBGP: add", ""),
    ]),
    "both backends": (["ip -batch + raw ExaBGP: add", "ip -batch + raw ExaBGP: delete"], [
        ("f2b-bgp kernel + ExaBGP: add", "ip -batch + raw ExaBGP: add", ""),
        ("f2b-bgp kernel + ExaBGP: API answered all bans", "ip -batch + raw ExaBGP: add", ""),
        ("f2b-bgp kernel + ExaBGP: delete", "ip -batch + raw ExaBGP: delete", ""),
        ("f2b-bgp kernel + ExaBGP: API answered the flush", "ip -batch + raw ExaBGP: delete", ""),
    ]),
}


def report(seconds: dict[str, list[float]]) -> None:
    print(f"\nbulk through ExaBGP: {N} IPv6 bans -> all in the FRR firewall's RIB, then flush -> none; {REPS} "
          "repetitions; ratio = seconds over the baseline's seconds in the same repetition (lower is better)")
    print(f"{'':48s} {'min':>6s} {'median':>6s} {'max':>6s}   seconds (median)")
    for group, (baselines, rows) in ROWS.items():
        for base in baselines:
            print(f"{base:48s} {'':20s}   {statistics.median(seconds[base]):.2f}")
        for name, base, target in rows:
            ratios = [v / b for v, b in zip(seconds[name], seconds[base])]
            print(f"{name:48s} {spread(ratios)}   {statistics.median(seconds[name]):.2f}")
            figure(f"bulk {N:,} bans -> FRR firewall RIB, {group}", name, seconds[name], seconds[base], "s",
                   base=base, target=target)


def main() -> None:
    nets = prefixes(N)
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="f2b-bench-exabgp-bulk-") as work, Topology() as topo:
        topo.run("injector", ["ip", "addr", "add", f"{EXABGP_SIDE}/29", "dev", "inj0"])
        with Frr(topo.ns("firewall"), firewall_with_two_injectors(Path(work))) as firewall, \
                Frr(topo.ns("injector"), {d: EXAMPLES / "injector" / f"{d}.conf" for d in ("zebra", "bgpd")},
                    extra_args={**ZEBRA_ARGS, "bgpd": ["-l", FRR_SIDE]}):
            up(firewall, FRR_SIDE)
            for rep in range(REPS):
                print(f"repetition {rep + 1}:", flush=True)
                run = Repetition(topo, firewall, nets)
                run.raw()
                run.exabgp_backend()
                run.both_raw()
                run.both_backends()
                for name, value in run.seconds.items():
                    seconds.setdefault(name, []).append(value)
    report(seconds)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab lives in throw-away namespaces")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the with-blocks' cleanup
    main()
