"""The docs/contracts.md lab: attacker, firewall, server and injector namespaces."""

from __future__ import annotations

import ipaddress
import json
import secrets
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from .process import Process, netns_argv, stop_processes_in
from .wait import wait_until_empty

NODES = ("attacker", "firewall", "server", "injector")


@dataclass(frozen=True)
class Link:
    a: str
    a_if: str
    a_addrs: tuple[str, ...]
    b: str
    b_if: str
    b_addrs: tuple[str, ...]


# docs/contracts.md, "Lab topology"
LINKS = (
    Link("attacker", "att0", ("203.0.113.66/24", "2001:db8:203::66/64"),
         "firewall", "fwa0", ("203.0.113.1/24", "2001:db8:203::1/64")),
    Link("firewall", "fws0", ("198.51.100.129/25", "2001:db8:2::1/64"),
         "server", "srv0", ("198.51.100.130/25", "2001:db8:2::10/64")),
    Link("firewall", "fwi0", ("198.51.100.1/29", "2001:db8:1::1/64"),
         "injector", "inj0", ("198.51.100.2/29", "2001:db8:1::2/64")),
)
GATEWAYS = {
    "attacker": ("203.0.113.1", "2001:db8:203::1"),
    "server": ("198.51.100.129", "2001:db8:2::1"),
    "injector": ("198.51.100.1", "2001:db8:1::1"),
}
# symbolic host addresses, per address family (tests parametrise over "4" / "6")
HOSTS: Mapping[str, Mapping[str, str]] = {
    "attacker": {"4": "203.0.113.66", "6": "2001:db8:203::66"},
    "server": {"4": "198.51.100.130", "6": "2001:db8:2::10"},
    "firewall": {"4": "198.51.100.1", "6": "2001:db8:1::1"},   # peering side
    "injector": {"4": "198.51.100.2", "6": "2001:db8:1::2"},
}
DISCARD_NEXTHOPS = {"4": "192.0.2.1", "6": "100::1"}
FIREWALL_INGRESS = "fwa0"
MAX_EXTRA_ATTACKERS = 188  # 203.0.113.67 .. 203.0.113.254

Urpf = Literal["loose", "strict"] | None


def extra_attacker(index: int, family: str) -> str:
    """The index-th extra attacker address (0 -> 203.0.113.67 / 2001:db8:203::67)."""
    if not 0 <= index < MAX_EXTRA_ATTACKERS:
        raise ValueError(f"extra attacker index {index} outside 0..{MAX_EXTRA_ATTACKERS - 1}")
    return f"203.0.113.{67 + index}" if family == "4" else f"2001:db8:203::{67 + index}"


def host_prefix(address: str) -> str:
    """203.0.113.66 -> 203.0.113.66/32, 2001:db8:203::66 -> 2001:db8:203::66/128."""
    return str(ipaddress.ip_network(address))


class Topology:
    """Four namespaces wired as in docs/contracts.md, removed on exit even when the body fails.

    urpf: None, "loose" (rp_filter=2, nft `fib saddr oif missing drop`) or "strict"
    (rp_filter=1, nft `fib saddr . iif oif missing drop`) on the firewall.
    extra_attackers: N more attacker addresses, 203.0.113.67.. /32 and 2001:db8:203::67.. /128, on the
    attacker's att0 (IPv6 ones deprecated so they are never picked as default source). The firewall
    reaches them through its connected /24 and /64 (ARP/ND), so its routing table holds no extra
    routes that would compete with blackholes.
    discard_routes: also add kernel blackholes for the discard next-hops 192.0.2.1 and 100::1 on the firewall.
    """

    def __init__(self, urpf: Urpf = None, extra_attackers: int = 0, discard_routes: bool = False,
                 prefix: str | None = None) -> None:
        if extra_attackers > MAX_EXTRA_ATTACKERS:
            raise ValueError(f"at most {MAX_EXTRA_ATTACKERS} extra attackers")
        self.prefix = prefix or f"fb{secrets.token_hex(3)}-"  # unique per instance; interface names stay fixed
        self.urpf: Urpf = urpf
        self.extra_attackers = extra_attackers
        self.discard_routes = discard_routes
        self.created: list[str] = []

    # --- names and commands -------------------------------------------------
    def ns(self, node: str) -> str:
        if node not in NODES:
            raise KeyError(f"unknown node {node!r}; nodes are {', '.join(NODES)}")
        return self.prefix + node

    @property
    def namespaces(self) -> list[str]:
        return [self.ns(node) for node in NODES]

    def run(self, node: str, argv: Sequence[str], check: bool = True, input: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run argv inside the node's namespace; stdout/stderr captured as text."""
        result = subprocess.run(netns_argv(self.ns(node), argv), capture_output=True, text=True, input=input,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"in {self.ns(node)}: {' '.join(argv)} -> rc {result.returncode}: "
                               f"{result.stderr.strip() or result.stdout.strip()}")
        return result

    def spawn(self, node: str, argv: Sequence[str], **kwargs: object) -> Process:
        """Start a Process inside the node (stopped by Topology exit at the latest)."""
        return Process(argv, netns=self.ns(node), **kwargs).start()  # type: ignore[arg-type]

    def ip_json(self, node: str, argv: Sequence[str]) -> list[dict]:
        return json.loads(self.run(node, ["ip", "-j", *argv]).stdout or "[]")

    # --- life cycle -----------------------------------------------------------
    def __enter__(self) -> Topology:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        for node in NODES:
            subprocess.run(["ip", "netns", "add", self.ns(node)], check=True, capture_output=True, timeout=30)
            self.created.append(self.ns(node))
            self.run(node, ["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
            self.run(node, ["ip", "link", "set", "lo", "up"])
        for link in LINKS:
            subprocess.run(["ip", "link", "add", link.a_if, "netns", self.ns(link.a), "type", "veth", "peer",
                            "name", link.b_if, "netns", self.ns(link.b)], check=True, capture_output=True, timeout=30)
            for node, dev, addrs in ((link.a, link.a_if, link.a_addrs), (link.b, link.b_if, link.b_addrs)):
                self._batch(node, [f"addr add {a} dev {dev} nodad" for a in addrs] + [f"link set {dev} up"])
        for node, (gw4, gw6) in GATEWAYS.items():
            self._batch(node, [f"route add default via {gw4}", f"route add default via {gw6}"])
        self.run("firewall", ["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                              "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"])
        if self.discard_routes:
            self._batch("firewall", [f"route add blackhole {DISCARD_NEXTHOPS['4']}/32",
                                     f"route add blackhole {DISCARD_NEXTHOPS['6']}/128"])
        if self.extra_attackers:
            self._batch("attacker", [f"addr add {extra_attacker(i, '4')}/32 dev att0" for i in range(self.extra_attackers)]
                        + [f"addr add {extra_attacker(i, '6')}/128 dev att0 nodad preferred_lft 0"
                           for i in range(self.extra_attackers)])
        if self.urpf:
            self.enable_urpf(self.urpf)
        self.wait_links_ready()

    def links_not_ready(self) -> list[str]:
        """Interfaces not yet passing packets: operstate not UP, or still on the `noop` qdisc."""
        waiting = []
        for node in NODES:
            for link in self.ip_json(node, ["link", "show"]):
                if link["ifname"] != "lo" and (link.get("operstate") != "UP" or link.get("qdisc") == "noop"):
                    waiting.append(f"{node}/{link['ifname']}:{link.get('operstate')}/{link.get('qdisc')}")
        return waiting

    def wait_links_ready(self, timeout: float = 10) -> None:
        """A veth drops packets until the kernel's linkwatch (up to ~1 s later) swaps its noop qdisc."""
        wait_until_empty(self.links_not_ready, timeout, f"links of {self.prefix} up", interval=0.02)

    def down(self) -> None:
        """Stop processes left in our namespaces (by PID), then delete every namespace we created."""
        try:
            stop_processes_in(self.created)
        finally:
            for name in reversed(self.created):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
            self.created.clear()

    def _batch(self, node: str, commands: Sequence[str]) -> None:
        """Many `ip` commands in one process (fast for bulk addresses)."""
        self.run(node, ["ip", "-batch", "-"], input="\n".join(commands) + "\n")

    # --- uRPF -----------------------------------------------------------------
    def enable_urpf(self, mode: Literal["loose", "strict"] = "loose") -> None:
        """Source-based drops on the firewall: IPv4 rp_filter on all+ingress, nftables fib rule for both."""
        value = {"strict": "1", "loose": "2"}[mode]
        self.run("firewall", ["sysctl", "-qw", f"net.ipv4.conf.all.rp_filter={value}",
                              f"net.ipv4.conf.{FIREWALL_INGRESS}.rp_filter={value}"])
        match = "fib saddr . iif oif missing" if mode == "strict" else "fib saddr oif missing"
        ruleset = ("table inet f2b_lab_urpf {\n chain pre {\n  type filter hook prerouting priority raw; policy accept;\n"
                   f"  {match} counter drop\n }}\n}}\n")
        self.run("firewall", ["nft", "-f", "-"], input=ruleset)
        self.urpf = mode

    def urpf_drops(self) -> int:
        """Packets the firewall's nft uRPF rule has dropped; compare deltas (it already counts ~2 packets
        sent at link-up, before any probe). nft drops in prerouting come before IPv4 rp_filter, so
        nstat TcpExtIPReversePathFilter stays 0 while this rule is in place."""
        out = self.run("firewall", ["nft", "-j", "list", "table", "inet", "f2b_lab_urpf"], check=False).stdout
        for item in json.loads(out or '{"nftables": []}')["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        return 0

    def describe(self) -> str:
        """How to reach the lab by hand."""
        lines = [f"lab {self.prefix}  (uRPF: {self.urpf or 'off'})"]
        for node in NODES:
            addrs = ", ".join(HOSTS[node].values())
            lines.append(f"  {node:9s} ip netns exec {self.ns(node)} bash     # {addrs}")
        return "\n".join(lines)


def live_namespaces() -> list[str]:
    """Names from `ip netns list` (for leak checks)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]
