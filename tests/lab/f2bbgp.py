"""The f2b-bgp daemon (`f2b-bgp serve`) in a namespace, and its CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from f2b_bgp.client import Client

from .daemon import Daemon

SOCKET = "api.sock"
FW1 = """
[[bgp.peers]]
name = "fw1"
address = "198.51.100.1"
asn = 65000
"""


def lab_config(daemon: str = "", guards: str = "", rest: str = "", retry_interval: float = 0.2) -> str:
    """The lab's daemon config: its socket and database in the work dir, the injector's
    networks protected, the attacker's documentation ranges allowed; DAEMON and GUARDS
    add keys to those tables, REST the tables that follow (bgp, backends)."""
    return f"""[daemon]
socket = "{{workdir}}/{SOCKET}"
database = "{{workdir}}/state.db"
retry_interval = {retry_interval}
{daemon}
[guards]
protected = [{{ prefix = "198.51.100.0/24", name = "our network" }}, "2001:db8:1::/64", "2001:db8:2::/64"]
allow_special = ["203.0.113.0/24", "2001:db8:203::/48"]
{guards}
{rest}"""


def exabgp_tables(kernel: bool, bgp: str = "", exabgp: str = "", local_address: str = "198.51.100.2") -> str:
    """The [bgp] and backends tables of a lab daemon announcing through ExaBGP to fw1 (and the kernel
    too if asked); BGP and EXABGP add keys to those tables. For lab_config's REST.
    local_address: ExaBGP's side of the session (another injector address when FRR holds .2)."""
    return f"""[bgp]
local_as = 65001
router_id = "198.51.100.2"
next_hop_ipv4 = "198.51.100.2"
next_hop_ipv6 = "2001:db8:1::2"
{bgp}
{FW1.strip()}
local_address = "{local_address}"
[backends.kernel]
enabled = {str(kernel).lower()}
[backends.exabgp]
enabled = true
bridge_socket = "{{workdir}}/exabgp.sock"
bridge_user = "root"  # the lab runs ExaBGP as root
{exabgp}"""


class F2bBgp(Daemon):
    """config: TOML text; "{workdir}" in it becomes the daemon's work dir.

    It must put the socket at {workdir}/api.sock and the database in {workdir}
    (a restart keeps the work dir, so state survives it as in production).
    """

    name = "f2b-bgp"

    def __init__(self, netns: str, config: str, workdir: Path | None = None, start_timeout: float = 20,
                 serve_args: tuple[str, ...] = (), wrap: tuple[str, ...] = ()) -> None:
        """serve_args: e.g. ("--discard",) for a new store in a namespace where an earlier daemon left routes.
        wrap: argv the daemon runs under (tests.lab.mounts: its database on a tiny tmpfs, read-only)."""
        super().__init__(netns, workdir)
        self.serve_args, self.wrap = serve_args, wrap
        self.config = self.workdir / "config.toml"
        self.config.write_text(config.replace("{workdir}", str(self.workdir)))
        self.socket = self.workdir / SOCKET
        self.start_timeout = start_timeout

    def start(self) -> None:
        log = self.workdir / "daemon.log"
        mark = log.stat().st_size if log.exists() else 0
        proc = self.spawn([*self.wrap, sys.executable, "-m", "f2b_bgp", "--config", str(self.config), "serve",
                           *self.serve_args], "daemon.log",
                          cwd=Path(__file__).parents[2])
        proc.wait_ready(lambda: "ready socket=" in log.read_text()[mark:], self.start_timeout, "f2b-bgp ready")

    @property
    def pid(self) -> int:
        return self.processes[-1].pid

    @property
    def returncode(self) -> int | None:
        """The exit code of the last daemon started, None while it runs."""
        proc = self.processes[-1].proc
        return None if proc is None else proc.poll()

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Crash the daemon: no chance to clean up."""
        self.processes[-1].kill(sig)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "f2b_bgp", "--socket", str(self.socket), *args],
                              capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2])

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        with Client(str(self.socket)) as client:
            return client.call(op, **fields)
