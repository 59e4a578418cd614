"""Edge-to-firewall latency: a ban on an edge until the firewall's BGP table has it, against the same ban made
on the central itself, as a ratio measured in the same run.

The lab of tests/live/test_central.py (namespaces, trustme certificates, a central with ExaBGP peering with
FRR from the shipped snippets, an edge with the remote backend). Each ban goes through the daemon's Unix
socket; the firewall is polled with vtysh (each poll costs a few ms, which both sides pay alike).

Run as root: python3 bench/central_latency.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import figure  # noqa: E402  (bench/report.py)

from f2b_bgp.peering.regenerate import reference_config  # noqa: E402
from tests.lab.exabgp import Exabgp, with_bridge_program  # noqa: E402
from tests.lab.f2bbgp import F2bBgp  # noqa: E402
from tests.lab.frr import Frr  # noqa: E402
from tests.lab.netns import Topology  # noqa: E402
from tests.lab.process import make_workdir, remove_workdir  # noqa: E402
from tests.lab.wait import wait_until  # noqa: E402
from tests.live.test_central import CENTRAL, TOKENS, central_config, edge_config, make_pki  # noqa: E402
from tests.live.test_exabgp import EXABGP_DIR, exabgp_env  # noqa: E402
from tests.live.test_peering import SHIPPED  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 30


def at_firewall(frr: Frr, prefix: str) -> bool:
    return bool(frr.vtysh_json(f"show bgp ipv4 unicast {prefix} json").get("paths"))


def latencies(daemon: F2bBgp, frr: Frr, first: int) -> list[float]:
    """Seconds from each ban to its route at the firewall, one ban at a time."""
    found = []
    for i in range(first, first + N):
        prefix = f"203.0.113.{i}/32"
        start = time.perf_counter()
        answer = daemon.call("ban", prefix=prefix, jail="bench")
        assert answer["state"] == "active", answer
        wait_until(lambda p=prefix: at_firewall(frr, p), 30, f"{prefix} at the firewall", interval=0.002)
        found.append(time.perf_counter() - start)
    return found


def main() -> None:
    if N > 100:
        raise SystemExit("at most 100 bans per side (203.0.113.20-219)")
    with ExitStack() as stack:
        tls = make_workdir("bench-tls")
        stack.callback(remove_workdir, tls)
        make_pki(tls)
        topo = stack.enter_context(Topology())
        frr = stack.enter_context(Frr(topo.ns("firewall"),
                                      {d: SHIPPED["frr"] / f"{d}.conf" for d in ("zebra", "staticd", "bgpd")}))
        central = stack.enter_context(F2bBgp(topo.ns("injector"), central_config(tls, TOKENS)))
        conf = with_bridge_program(EXABGP_DIR / "exabgp.conf", central.workdir,
                                   str(reference_config().exabgp.bridge_program))
        stack.enter_context(Exabgp(topo.ns("injector"), conf, listen=CENTRAL, workdir=central.workdir,
                                   env=exabgp_env(central), env_file=EXABGP_DIR / "exabgp.env"))
        edge = stack.enter_context(F2bBgp(topo.ns("server"), edge_config("web1", tls)))
        wait_until(lambda: edge.call("status")["backends"]["central"]["ready"], 30, "edge connected")
        wait_until(lambda: central.call("status")["backends"]["exabgp"]["peers"].get(
            "198.51.100.1", {}).get("state") == "up", 60, "BGP session up")
        direct = latencies(central, frr, 20)
        via_edge = latencies(edge, frr, 120)
        d, e = statistics.median(direct), statistics.median(via_edge)
        print(f"{N} bans, one at a time, until the route is in FRR's BGP table (median):")
        print(f"  on the central      {d * 1000:7.1f} ms")
        print(f"  on an edge (HTTPS)  {e * 1000:7.1f} ms   ratio edge/central = {e / d:.2f}")
        figure(f"edge to firewall, {N} bans", "ban on an edge -> FRR BGP table, p50", e * 1000, d * 1000, "ms",
               base="ban on the central")


if __name__ == "__main__":
    main()
