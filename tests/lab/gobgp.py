"""GoBGP in the foreground in a namespace: `gobgpd -f CONF -p --api-hosts 127.0.0.1:PORT`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .daemon import Daemon
from .process import netns_argv

CLI_TIMEOUT = 5  # the gobgp CLI blocks on its gRPC deadline when gobgpd is gone: always bounded

_FREE_PORT = "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"


class Gobgp(Daemon):
    """config: path of a gobgpd config (toml/yaml/json by suffix), copied into the work dir.

    The API listens on a free port of the namespace's own loopback.
    """

    name = "gobgp"

    def __init__(self, netns: str, config: Path, workdir: Path | None = None, start_timeout: float = 20,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(netns, workdir)
        self.config, self.start_timeout = Path(config), start_timeout
        self.extra_args = list(extra_args)
        self.port = 0

    def start(self) -> None:
        suffix = self.config.suffix.lstrip(".") or "toml"
        conf = self.install(self.config, f"gobgpd.{suffix}")
        self.port = int(subprocess.run(netns_argv(self.netns, [sys.executable, "-c", _FREE_PORT]), capture_output=True,
                                       text=True, check=True, timeout=30).stdout)
        proc = self.spawn(["gobgpd", "-f", str(conf), "-t", suffix, "-p", "--api-hosts", f"127.0.0.1:{self.port}", *self.extra_args],
                          "gobgpd.log")
        proc.wait_ready(lambda: self.gobgp("global", json_output=False, timeout=2) is not None, self.start_timeout,
                        f"gobgpd API 127.0.0.1:{self.port} in {self.netns}")

    def gobgp(self, *args: str, json_output: bool = True, timeout: float = CLI_TIMEOUT) -> Any:
        """`gobgp -u 127.0.0.1 -p PORT ARGS... [-j]` inside the namespace, under `timeout`."""
        argv = ["timeout", str(timeout), "gobgp", "-u", "127.0.0.1", "-p", str(self.port), *args,
                *(["-j"] if json_output else [])]
        result = subprocess.run(netns_argv(self.netns, argv), capture_output=True, text=True, timeout=timeout + 5)
        if result.returncode != 0:
            raise RuntimeError(f"gobgp {' '.join(args)}: rc {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
        return json.loads(result.stdout or "null") if json_output else result.stdout
