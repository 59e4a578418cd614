"""The lab of docs/contracts.md: attacker, firewall, server and injector namespaces, and FRR daemons.

Runnable by hand for debugging:  python3 -m tests.live.topology  (prints the namespaces, Enter tears down)
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .daemon_env import Namespace, wait_until

NODES = ("attacker", "firewall", "server", "injector")
# (node, interface, peer node, peer interface, addresses of node, addresses of peer)
LINKS = [
    ("attacker", "att0", "firewall", "fwa0", ["203.0.113.66/24", "2001:db8:203::66/64"],
     ["203.0.113.1/24", "2001:db8:203::1/64"]),
    ("firewall", "fws0", "server", "srv0", ["198.51.100.129/25", "2001:db8:2::1/64"],
     ["198.51.100.130/25", "2001:db8:2::10/64"]),
    ("firewall", "fwi0", "injector", "inj0", ["198.51.100.1/29", "2001:db8:1::1/64"],
     ["198.51.100.2/29", "2001:db8:1::2/64"]),
]
ROUTES = {
    "attacker": [["203.0.113.1"], ["2001:db8:203::1"]],
    "server": [["198.51.100.129"], ["2001:db8:2::1"]],
    "injector": [["198.51.100.1"], ["2001:db8:1::1"]],
}
SERVER4, SERVER6 = "198.51.100.130", "2001:db8:2::10"


class Topology:
    """Four namespaces wired as in docs/contracts.md; removed on exit even when a test fails."""

    def __init__(self, urpf: bool = False) -> None:
        self.tag = secrets.token_hex(3)
        self.ns = {node: Namespace(node[:3], tag=self.tag) for node in NODES}
        self.urpf = urpf

    def __enter__(self) -> Topology:
        try:
            for ns in self.ns.values():
                ns.__enter__()
            self._wire()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in self.ns.values():
            ns.__exit__()

    def _wire(self) -> None:
        for ns in self.ns.values():  # no duplicate address detection: addresses usable at once
            ns.run(["sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"])
        for node, ifname, peer, peer_if, addrs, peer_addrs in LINKS:
            subprocess.run(["ip", "link", "add", ifname, "netns", self.ns[node].name, "type", "veth", "peer", "name",
                            peer_if, "netns", self.ns[peer].name], check=True)
            for name, dev, cidrs in ((node, ifname, addrs), (peer, peer_if, peer_addrs)):
                for cidr in cidrs:
                    self.ns[name].run(["ip", "addr", "add", cidr, "dev", dev, "nodad"])
                self.ns[name].run(["ip", "link", "set", dev, "up"])
        for node, (gw4, gw6) in ROUTES.items():
            self.ns[node].run(["ip", "route", "add", "default", "via", *gw4])
            self.ns[node].run(["ip", "-6", "route", "add", "default", "via", *gw6])
        self.ns["firewall"].run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"])
        if self.urpf:
            self.enable_urpf()

    def enable_urpf(self) -> None:
        """Loose uRPF: IPv4 rp_filter=2 and, for both families, nftables `fib saddr oif missing drop`."""
        fw = self.ns["firewall"]
        fw.run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2", "net.ipv4.conf.fwa0.rp_filter=2"])
        fw.run(["nft", "add table inet f2b_urpf"])
        fw.run(["nft", "add chain inet f2b_urpf pre { type filter hook prerouting priority raw ; policy accept ; }"])
        fw.run(["nft", "add rule inet f2b_urpf pre fib saddr oif missing drop"])

    def reachable(self, target: str, port: int = 8080) -> bool:
        """One TCP connect from the attacker to the server, 1 s timeout."""
        code = ("import socket,sys\ntry:\n socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()\n"
                "except OSError:\n sys.exit(1)\n")
        return self.ns["attacker"].run(["python3", "-c", code, target, str(port)], check=False).returncode == 0


class TcpServer:
    """A listener on the server for the attacker's probes."""

    def __init__(self, ns: Namespace, port: int = 8080) -> None:
        self.ns, self.port = ns, port
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> TcpServer:
        code = ("import socket\ns=socket.create_server(('::', %d), family=socket.AF_INET6, dualstack_ipv6=True)\n"
                "while True:\n c,_=s.accept(); c.close()\n" % self.port)
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns.name, "python3", "-c", code])
        wait_until(lambda: f":{self.port} " in self.ns.run(["ss", "-Hltn"]).stdout, 10, "probe listener")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Frr:
    """FRR daemons (zebra, optionally staticd, bgpd) in a namespace, as user frr, stopped by PID."""

    def __init__(self, ns: Namespace, configs: dict[str, Path]) -> None:
        self.ns, self.configs = ns, configs
        self.procs: list[subprocess.Popen] = []
        # FRR drops to user frr, which cannot enter pytest's private tmp tree
        self.dir = Path(tempfile.mkdtemp(prefix=f"f2b-frr-{ns.name}-"))

    def __enter__(self) -> Frr:
        self.dir.chmod(0o755)
        frr = pwd.getpwnam("frr")
        for daemon, source in self.configs.items():
            shutil.copyfile(source, self.dir / f"{daemon}.conf")
        for path in [self.dir, *self.dir.iterdir()]:
            os.chown(path, frr.pw_uid, frr.pw_gid)
        try:
            for daemon in ("zebra", "staticd", "bgpd"):
                if daemon in self.configs:
                    self._start(daemon)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self, daemon: str) -> None:
        d = self.dir
        log = open(d / f"{daemon}.out", "w")
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns.name, f"/usr/lib/frr/{daemon}", "-f", str(d / f"{daemon}.conf"),
             "--vty_socket", str(d), "-z", str(d / "zserv.api"), "-i", str(d / f"{daemon}.pid"), "-P", "0",
             "--log", f"file:{d / daemon}.log", "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT))
        log.close()
        ready = d / ("zserv.api" if daemon == "zebra" else f"{daemon}.vty")
        wait_until(lambda: self._alive() and ready.exists(), 20, f"FRR {daemon} in {self.ns.name}")

    def _alive(self) -> bool:
        dead = [p for p in self.procs if p.poll() is not None]
        if dead:
            raise AssertionError(f"FRR daemon exited: {dead[0].args[3]}\n{self.log_tail()}")
        return True

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def vtysh(self, command: str) -> str:
        return self.ns.run(["vtysh", "--vty_socket", str(self.dir), "-c", command]).stdout

    def json(self, command: str) -> dict:
        return json.loads(self.vtysh(command) or "{}")

    def established(self, peer: str) -> bool:
        return self.json(f"show bgp neighbors {peer} json").get(peer, {}).get("bgpState") == "Established"

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join("\n".join(p.read_text().splitlines()[-lines:]) for p in sorted(self.dir.glob("*.log")))


if __name__ == "__main__":
    with Topology() as topo:
        print("\n".join(f"{node}: ip netns exec {ns.name} ..." for node, ns in topo.ns.items()))
        input("Enter tears the lab down: ")
