"""Data-plane checks from the attacker: does an echo / a TCP connect get through, and where did it die?"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NamedTuple

from .netns import Topology
from .process import Process, make_workdir, remove_workdir

PROBE_PORT = 8080
_HERE = Path(__file__).resolve().parent


class ProbeResult(NamedTuple):
    icmp: bool
    tcp: bool

    def __str__(self) -> str:
        return f"icmp={'ok' if self.icmp else 'DROP'} tcp={'ok' if self.tcp else 'DROP'}"


def probe(topology: Topology, host: str, source: str | None = None, port: int = PROBE_PORT,
          node: str = "attacker") -> ProbeResult:
    """One ICMP echo + one TCP connect from `node` (default attacker) to host, 1 s timeout each.

    Needs a listener on the server (ServerListener / the `server_listener` fixture) for tcp to be ok.
    """
    argv = [sys.executable, str(_HERE / "_probe_main.py"), host, str(port)] + ([source] if source else [])
    out = topology.run(node, argv, timeout=10).stdout
    result = json.loads(out)
    return ProbeResult(result["icmp"], result["tcp"])


class ServerListener:
    """A TCP listener on [::]:port in a node (default server), for probe(); stopped by PID."""

    def __init__(self, topology: Topology, node: str = "server", port: int = PROBE_PORT) -> None:
        self.topology, self.node, self.port = topology, node, port
        self.workdir = make_workdir(f"{topology.ns(node)}-listener")
        self.process = Process([sys.executable, str(_HERE / "_listener_main.py"), str(port)],
                               netns=topology.ns(node), log=self.workdir / "listener.log")

    def __enter__(self) -> ServerListener:
        self.process.start()
        try:
            self.process.wait_ready(self._listening, 10, f"TCP listener on {self.topology.ns(self.node)}:{self.port}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def _listening(self) -> bool:
        out = self.topology.run(self.node, ["ss", "-Hltn", f"sport = :{self.port}"]).stdout
        return bool(out.strip())

    def __exit__(self, *exc: object) -> None:
        self.process.stop()
        remove_workdir(self.workdir)


def nstat(topology: Topology, node: str) -> dict[str, int]:
    """Absolute kernel SNMP counters of a node (`nstat -asz`: absolute, no history file, zeros too).

    Plain `nstat` keeps a per-user history file shared across namespaces and gives wrong deltas.
    """
    counters: dict[str, int] = {}
    for line in topology.run(node, ["nstat", "-asz"]).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.startswith("#") and parts[1].isdigit():
            counters[parts[0]] = int(parts[1])
    return counters


def counter_delta(before: dict[str, int], after: dict[str, int], *names: str) -> dict[str, int]:
    """after - before for the named counters (missing counters count as 0)."""
    return {name: after.get(name, 0) - before.get(name, 0) for name in names}


# counters that tell where a probe died
SERVER_ECHO_COUNTER = {"4": "IcmpInEchos", "6": "Icmp6InEchos"}
SERVER_REPLY_COUNTER = {"4": "IcmpOutEchoReps", "6": "Icmp6OutEchoReplies"}
FIREWALL_RPF_COUNTER = "TcpExtIPReversePathFilter"  # IPv4 rp_filter drops; IPv6 nft drops: Topology.urpf_drops()
