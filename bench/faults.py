"""Every fault scenario of issue 13 at full size, one line each: acknowledged / lost / stale / duplicated
and the time to converge again (the scenarios are tests/lab/faults.py, never_reads.py, storm.py and
daemon_down.py, which tests/live/test_faults.py and test_fail2ban.py run small).

* kill -9 of the daemon, of ExaBGP and of the firewall's bgpd, and a session flap (`clear bgp`), each at
  the half-way answer of a storm of N IPv6 bans through ExaBGP to an FRR firewall, RUNS runs each;
  lost/stale/duplicated compare the firewall's RIB with the store once converged
* disk full, read-only store, empty store, bridge impersonation, a client that never reads; for the
  kernel-backend ones the injector's kernel routes are compared with the store
* the daemon down while fail2ban (the shipped `.conf` action) bans: the queue is applied when it is back

Run as root: python3 bench/faults.py [exabgp|store|fail2ban|clients ...]   (env F2B_FAULTS_STORM=10000 F2B_FAULTS_RUNS=3)
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from tests.lab import faults, storm  # noqa: E402  (the lab is the repository's, not an installed package)
from tests.lab.daemon_down import daemon_down  # noqa: E402
from tests.lab.faults import Tally  # noqa: E402
from tests.lab.never_reads import never_reads  # noqa: E402
from tests.lab.netns import Topology  # noqa: E402

STORM = int(os.environ.get("F2B_FAULTS_STORM", "10000"))
RUNS = int(os.environ.get("F2B_FAULTS_RUNS", "3"))
FAIL2BAN_BANS = 2000  # the .conf action costs ~6 ms per ban in fail2ban (docs/fail2ban.md)
HEADER = f"{'scenario':<24} {'run':>3} {'acked':>6} {'lost':>5} {'stale':>5} {'dup':>4} {'converge':>9}  notes"


def row(tally: Tally, run: int | str = "") -> str:
    return (f"{tally.scenario:<24} {run!s:>3} {tally.acknowledged:>6} {tally.lost:>5} {tally.stale:>5} "
            f"{tally.duplicated:>4} {tally.converge_s:>8.1f}s  {tally.notes}")


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine())
    mem = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))) / 2**20
    frr = subprocess.run(["/usr/lib/frr/bgpd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    return (f"{os.cpu_count()} x {cpu}, {mem:.1f} GiB, Linux {platform.release()}, Python {platform.python_version()}, "
            f"FRR {frr.split()[-1]}, ExaBGP {version('exabgp')}, "
            f"load average at start {os.getloadavg()[0]:.2f}")


def exabgp_chain(topology: Topology) -> None:
    with storm.StormLab(topology) as lab:
        for fault in storm.FAULTS:
            for run in range(1, RUNS + 1):
                print(row(storm.storm(lab, STORM, fault, run), run), flush=True)
        print(row(storm.empty_store(lab, bans=STORM).tally), flush=True)
        found = storm.impostors(lab, bans=1000)
        print(row(found.tally), f"; of 3 impostors 1 could not open the socket "
              f"({found.no_right.connect_error}), {len(found.refusals)} refused by the daemon, bridge pid "
              f"{'unchanged' if found.bridge_after == found.bridge_before else 'CHANGED'}", flush=True)


def store(topology: Topology) -> None:
    full = faults.disk_full(topology, before=1000, during=300, expiring=50, full_for=10)
    print(row(full.tally), f"; expiry retries while full {full.expiry_retries_while_full} in "
          f"{full.full_for_s:.0f} s, log lines {full.log_lines_while_full}", flush=True)
    read_only = faults.read_only(topology, bans=1000)
    print(row(read_only.tally), flush=True)
    empty = faults.empty_store(topology, routes=STORM)
    print(row(empty.tally), f"; start with --adopt {empty.adopt_s:.1f} s, with --discard {empty.discard_s:.1f} s, "
          f"{empty.routes_after_discard} routes left", flush=True)


def fail2ban(topology: Topology) -> None:
    print(row(daemon_down(topology, bans=FAIL2BAN_BANS)), flush=True)


def clients(topology: Topology) -> None:
    quiet = never_reads(topology, routes=STORM, seconds=15)
    print(row(quiet.tally), f"; p50 {quiet.attacked.p50_ms:.1f} ms, max {quiet.attacked.max_ms:.0f} ms "
          f"(quiet p99 {quiet.quiet.p99_ms:.1f} ms), {quiet.sent} requests sent, dropped after "
          f"{quiet.dropped_after_s:.0f} s", flush=True)


SECTIONS = {"exabgp": exabgp_chain, "store": store, "fail2ban": fail2ban, "clients": clients}


def main(sections: list[str]) -> None:
    started = time.monotonic()
    print(f"machine: {machine()}")
    print(f"storm: {STORM} IPv6 bans, {RUNS} runs per fault\n")
    print(HEADER, flush=True)
    with Topology() as topology:
        for name in sections:
            SECTIONS[name](topology)
    print(f"\ntotal {time.monotonic() - started:.0f} s, load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the scenarios start daemons in throw-away network namespaces")
    unknown = set(sys.argv[1:]) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; sections: {', '.join(SECTIONS)} (default: all)")
    main(sys.argv[1:] or list(SECTIONS))
