"""ExaBGP 5 (pip) in the foreground in a namespace, listening so peers connect at once (notes section 8)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from .daemon import Daemon
from .process import netns_argv

COMMANDS_FILE = "cmds"


def exabgp_config(workdir: Path, neighbor: str, local_address: str, router_id: str, local_as: int, peer_as: int,
                  families: Sequence[str] = ("ipv4 unicast", "ipv6 unicast"), static_routes: Sequence[str] = (),
                  name: str = "exabgp.conf") -> Path:
    """A minimal test config: one neighbor, an API process that follows WORKDIR/cmds (`tail -F`),
    and optional static routes (lines like `203.0.113.66/32 next-hop 198.51.100.2 community [65535:666]`)."""
    static = "".join(f"        route {route};\n" for route in static_routes)
    text = (f"process cmds {{\n    run /usr/bin/tail -n0 -F {workdir / COMMANDS_FILE};\n    encoder text;\n}}\n"
            f"neighbor {neighbor} {{\n    router-id {router_id};\n    local-address {local_address};\n"
            f"    local-as {local_as};\n    peer-as {peer_as};\n"
            f"    family {{ {'; '.join(families)}; }}\n    api {{ processes [ cmds ]; }}\n"
            + (f"    static {{\n{static}    }}\n" if static else "") + "}\n")
    path = workdir / name
    path.write_text(text)
    return path


def with_bridge_program(source: Path, workdir: Path, program: str) -> Path:
    """A copy of SOURCE (the shipped exabgp.conf) in WORKDIR with its one placeholder that names a
    file on the host, the bridge PROGRAM (backends.exabgp.bridge_program, listed in its header),
    replaced by a wrapper that runs this checkout's f2b-bgp with this Python."""
    wrapper = workdir / "f2b-bgp"
    repo = Path(__file__).parents[2]
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={repo}${{PYTHONPATH:+:$PYTHONPATH}} exec {sys.executable} -m f2b_bgp "$@"\n')
    wrapper.chmod(0o755)
    text = source.read_text(encoding="utf-8")
    run = f"    run {program} exabgp-bridge"
    assert text.count(run) == 1, f"{source}: expected one line starting {run!r}"
    path = workdir / "exabgp.conf"
    path.write_text(text.replace(run, f"    run {wrapper} exabgp-bridge"), encoding="utf-8")
    return path


class Exabgp(Daemon):
    """config: path of an exabgp.conf (used in place). listen: address to accept BGP on (None: connect only).
    env_file: given to ExaBGP as `--env-file` (the environment still wins over it).

    announce()/send() append API lines to WORKDIR/cmds, which configs from exabgp_config() follow.
    """

    name = "exabgp"

    def __init__(self, netns: str, config: Path, listen: str | None = None, port: int = 179,
                 workdir: Path | None = None, env: Mapping[str, str] | None = None, start_timeout: float = 30,
                 env_file: Path | None = None) -> None:
        super().__init__(netns, workdir)
        self.config, self.listen, self.port, self.start_timeout = Path(config), listen, port, start_timeout
        self.env_file = env_file
        self.env = dict(env or {})
        self.commands = self.workdir / COMMANDS_FILE

    def start(self) -> None:
        self.commands.touch()
        env = {"exabgp_daemon_user": "root", "exabgp_daemon_drop": "false", "exabgp_api_cli": "false",
               "exabgp_log_destination": "stdout", "exabgp_daemon_daemonize": "false"}
        if self.listen:
            env |= {"exabgp_tcp_bind": self.listen, "exabgp_tcp_port": str(self.port)}
        env_file = ["--env-file", str(self.env_file)] if self.env_file else []
        proc = self.spawn([sys.executable, "-m", "exabgp", *env_file, "server", str(self.config)], "exabgp.log",
                          env=env | self.env)
        if self.listen:
            proc.wait_ready(self._listening, self.start_timeout, f"ExaBGP listening on {self.listen}:{self.port}")

    def _listening(self) -> bool:
        out = subprocess.run(netns_argv(self.netns, ["ss", "-Hltn", f"sport = :{self.port}"]), capture_output=True,
                             text=True, timeout=10).stdout
        return bool(out.strip())

    def send(self, *lines: str) -> None:
        """Append API command lines (e.g. `announce route ...`) to the file ExaBGP's process follows."""
        with open(self.commands, "a") as out:
            out.write("".join(line.rstrip("\n") + "\n" for line in lines))
