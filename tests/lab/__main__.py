"""Bring the lab up by hand for debugging: python3 -m tests.lab [--urpf loose] [--bird CONF] [--exabgp] ...

Everything is torn down on Enter, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from .bird import Bird
from .exabgp import Exabgp, exabgp_config
from .frr import Frr
from .gobgp import Gobgp
from .netns import HOSTS, Topology
from .openbgpd import OpenBgpd
from .probe import PROBE_PORT, ServerListener
from .process import make_workdir, remove_workdir


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python3 -m tests.lab", description=__doc__.splitlines()[0])
    p.add_argument("--urpf", choices=["loose", "strict"], help="source drops on the firewall")
    p.add_argument("--extra-attackers", type=int, default=0, metavar="N", help="203.0.113.67.. on the attacker")
    p.add_argument("--discard-routes", action="store_true", help="kernel blackholes for 192.0.2.1 and 100::1")
    p.add_argument("--frr", type=Path, metavar="DIR", help="firewall FRR: DIR/{zebra,staticd,bgpd}.conf")
    p.add_argument("--bird", type=Path, metavar="CONF", help="firewall BIRD config")
    p.add_argument("--openbgpd", type=Path, metavar="CONF", help="firewall OpenBGPD config")
    p.add_argument("--gobgp", type=Path, metavar="CONF", help="firewall gobgpd config")
    p.add_argument("--exabgp", action="store_true", help="ExaBGP on the injector, peering with the firewall")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the with-blocks' cleanup
    with contextlib.ExitStack() as stack:
        topo = stack.enter_context(Topology(urpf=args.urpf, extra_attackers=args.extra_attackers,
                                            discard_routes=args.discard_routes))
        stack.enter_context(ServerListener(topo))
        print(topo.describe())
        print(f"  TCP listener on the server, port {PROBE_PORT}")
        fw = topo.ns("firewall")
        if args.frr:
            configs = {d: args.frr / f"{d}.conf" for d in ("zebra", "staticd", "bgpd") if (args.frr / f"{d}.conf").exists()}
            frr = stack.enter_context(Frr(fw, configs))
            print(f"  FRR:      vtysh --vty_socket {frr.workdir}")
        for option, cls, hint in ((args.bird, Bird, "birdc -s {d.socket}"), (args.openbgpd, OpenBgpd, "bgpctl -s {d.socket}"),
                                  (args.gobgp, Gobgp, "ip netns exec {d.netns} gobgp -p {d.port} neighbor")):
            if option:
                d = stack.enter_context(cls(fw, option))
                print(f"  {cls.__name__}: " + hint.format(d=d))
        if args.exabgp:

            wdir = make_workdir(f"{topo.ns('injector')}-exabgp-conf")
            stack.callback(remove_workdir, wdir)
            conf = exabgp_config(wdir, HOSTS["firewall"]["4"], HOSTS["injector"]["4"], HOSTS["injector"]["4"], 65001, 65000)
            exa = stack.enter_context(Exabgp(topo.ns("injector"), conf, listen=HOSTS["injector"]["4"], workdir=wdir))
            print(f"  ExaBGP:   echo 'announce route 203.0.113.66/32 next-hop 198.51.100.2 community [65535:666]' >> {exa.commands}")
        print("logs: each daemon's work dir above; Enter (or Ctrl-C) tears everything down.")
        try:
            input()
        except (KeyboardInterrupt, EOFError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
