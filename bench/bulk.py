"""Bulk end to end: N bans through the API until all are in an FRR firewall's RIB, then `flush` until all are gone.

The tests/lab topology: on the injector FRR with the shipped
frr-examples/injector files (`redistribute kernel`) and zebra's netlink buffer
as Debian starts it (`-s 90000000`), on the firewall FRR with
the firewall files rendered from the reference config (the shipped ones but
for maximum-prefix, raised from 10,000 to 2N: the only difference, checked).
Each repetition:

* baseline: `ip -batch` adding N IPv6 /128 blackholes on the injector (protocol
  202, which the daemon leaves alone), until the firewall holds all N; then
  deleting them until it holds none
* f2b-bgp with the kernel backend: N pipelined bans on one API connection until
  the firewall holds all N; then one `flush` until it holds none

The firewall's count is its accepted prefixes from the injector (`show bgp
ipv6 unicast summary json`, pfxRcd), polled every POLL seconds. Every figure is
the daemon's time over the baseline's in the same repetition (lower is better;
the target is at most 2), min/median/max. Each wait is bounded by WAIT seconds.

Run as root: python3 bench/bulk.py [N [REPS]]   (default 10000 1; make bench-full: 100000 3)
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]
from f2b_bgp.config import load_config  # noqa: E402  (run from a checkout)
from f2b_bgp.peering import render  # noqa: E402
from kernel_routes import pipelined  # noqa: E402  (a sibling script)
from report import figure  # noqa: E402
from tests.lab.f2bbgp import FW1, F2bBgp, lab_config  # noqa: E402
from tests.lab.frr import Frr  # noqa: E402
from tests.lab.netns import HOSTS, Topology  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000  # small by default: `make bench` runs every script
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 1
POLL = 0.1
WAIT = 60 + N / 500  # seconds
BASELINE_PROTO = 202
LIMIT = max(2 * N, 10000)  # the firewall's maximum-prefix; the reference config's guards need at least 10,000
EXAMPLES = ROOT / "frr-examples"
# as Debian's /etc/frr/daemons starts zebra: with the default netlink buffer, zebra missed ~7% of
# 100,000 kernel routes added by ip -batch (no overrun logged) and never announced them
ZEBRA_ARGS = {"zebra": ["-s", "90000000"]}
REFERENCE = ROOT / "f2b_bgp" / "config.example.toml"


def firewall_files(work: Path, limit: int) -> dict[str, Path]:
    """The firewall's FRR files from the reference config with bgp.prefix_limit = limit."""
    text = REFERENCE.read_text()
    if "\nprefix_limit = 10000\n" not in text:
        raise SystemExit(f"{REFERENCE}: no 'prefix_limit = 10000' line to raise")
    config = work / "reference.toml"
    config.write_text(text.replace("\nprefix_limit = 10000\n", f"\nprefix_limit = {limit}\n"))
    files = {}
    for name, content in render("frr", load_config(config)).items():
        shipped = (EXAMPLES / "firewall" / name).read_text()
        if _spaced(re.sub(rf"\b{limit}\b", "10000", content)) != _spaced(shipped):
            raise SystemExit(f"rendered {name} differs from frr-examples/firewall/{name} by more than the limit")
        (work / name).write_text(content)
        files[name.removesuffix(".conf")] = work / name
    return {daemon: files[daemon] for daemon in ("zebra", "staticd", "bgpd")}


def _spaced(text: str) -> str:
    return re.sub(" +", " ", text)  # a longer number in a comment column shifts what follows it


def prefixes(count: int) -> list[str]:
    return [f"2001:db8:203:{i >> 16:x}::{i & 0xFFFF:x}" for i in range(count)]


def received(firewall: Frr) -> int:
    summary = firewall.vtysh_json("show bgp ipv6 unicast summary json")
    return int(summary.get("peers", {}).get(HOSTS["injector"]["4"], {}).get("pfxRcd", -1))


def until(firewall: Frr, injector: Frr, count: int, start: float, what: str) -> float:
    """Seconds from start until the firewall holds count prefixes (bounded by WAIT)."""
    while (held := received(firewall)) != count:
        if time.perf_counter() - start > WAIT:
            zebra = injector.vtysh("show ipv6 route summary").splitlines()
            kernel = [line for line in zebra if line.startswith("kernel")]
            sent = injector.vtysh_json("show bgp ipv6 unicast summary json")
            raise SystemExit(f"{what}: the firewall holds {held} prefixes after {WAIT:g} s, expected {count}; "
                             f"the injector's zebra: {kernel}, its bgpd: {sent.get('ribCount')} RIB entries, "
                             f"{sent.get('peers', {}).get(HOSTS['firewall']['4'], {}).get('pfxSnt')} sent")
        time.sleep(POLL)
    return time.perf_counter() - start


def ip_batch(topo: Topology, verb: str, nets: list[str]) -> None:
    kind = "blackhole " if verb == "add" else ""
    script = "".join(f"route {verb} {kind}{p}/128 proto {BASELINE_PROTO}\n" for p in nets)
    topo.run("injector", ["ip", "-batch", "-"], input=script, timeout=WAIT)


def spread(values: list[float]) -> str:
    return f"{min(values):6.2f} {statistics.median(values):6.2f} {max(values):6.2f}"


def main() -> None:
    nets = prefixes(N)
    bans = [{"op": "ban", "prefix": p, "jail": "bench"} for p in nets]
    seconds: dict[str, list[float]] = {}
    config = lab_config(guards=f"max_routes = {N}\nmax_rate = {N * REPS}",  # the daemon's own intervals
                        rest=f'[bgp]\nlocal_as = 65001\nrouter_id = "198.51.100.2"\nprefix_limit = {2 * N}\n{FW1}',
                        retry_interval=5.0)  # prefix_limit: guards.max_routes may not exceed it
    with tempfile.TemporaryDirectory(prefix="f2b-bench-bulk-") as work, Topology() as topo, \
            Frr(topo.ns("firewall"), firewall_files(Path(work), LIMIT)) as firewall, \
            Frr(topo.ns("injector"), {d: EXAMPLES / "injector" / f"{d}.conf" for d in ("zebra", "bgpd")},
                extra_args=ZEBRA_ARGS) as injector, \
            F2bBgp(topo.ns("injector"), config) as daemon:
        deadline = time.monotonic() + 60
        while received(firewall) < 0:
            if time.monotonic() > deadline:
                raise SystemExit("the firewall's session with the injector is not up after 60 s")
            time.sleep(POLL)
        for rep in range(REPS):
            start = time.perf_counter()
            ip_batch(topo, "add", nets)
            seconds.setdefault("ip -batch + FRR: add", []).append(
                until(firewall, injector, N, start, "ip -batch add"))
            start = time.perf_counter()
            ip_batch(topo, "del", nets)
            seconds.setdefault("ip -batch + FRR: delete", []).append(
                until(firewall, injector, 0, start, "ip -batch del"))
            start = time.perf_counter()
            pipelined(daemon.socket, bans)
            api = time.perf_counter() - start
            seconds.setdefault("f2b-bgp kernel + FRR: add", []).append(until(firewall, injector, N, start, "bans"))
            seconds.setdefault("  of which the API answered all", []).append(api)
            start = time.perf_counter()
            pipelined(daemon.socket, [{"op": "flush"}])
            api = time.perf_counter() - start
            seconds.setdefault("f2b-bgp kernel + FRR: delete", []).append(until(firewall, injector, 0, start, "flush"))
            seconds.setdefault("  of which the flush answered", []).append(api)
            print(f"repetition {rep + 1}: " + ", ".join(f"{k.strip()} {v[-1]:.2f} s" for k, v in seconds.items()),
                  flush=True)
    print(f"\nbulk: {N} IPv6 bans -> all in the FRR firewall's RIB, then flush -> none; {REPS} repetitions; "
          "ratio = seconds over the baseline's seconds in the same repetition (lower is better)")
    print(f"{'':36s} {'min':>6s} {'median':>6s} {'max':>6s}   seconds (median)")
    for name, values in seconds.items():
        verb = "add" if name.endswith("add") or "API" in name else "delete"
        base = seconds[f"ip -batch + FRR: {verb}"]
        print(f"{name:36s} {spread([v / b for v, b in zip(values, base)])}   {statistics.median(values):.2f}")
        if not name.startswith("ip -batch"):
            target = "<= 2" if name.startswith("f2b-bgp") else ""
            figure(f"bulk {N:,} bans -> FRR firewall RIB", name.strip(), values, base, "s",
                   base=f"ip -batch + FRR: {verb}", target=target)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the lab lives in throw-away namespaces")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the with-blocks' cleanup
    main()
