"""BIRD 2 in the foreground in a namespace: `bird -f -c CONF -s SOCK`."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from .daemon import Daemon


class Bird(Daemon):
    """config: path of a bird.conf, copied byte for byte into the work dir."""

    name = "bird"

    def __init__(self, netns: str, config: Path, workdir: Path | None = None, start_timeout: float = 20,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(netns, workdir)
        self.config, self.start_timeout = Path(config), start_timeout
        self.extra_args = list(extra_args)
        self.socket = self.workdir / "bird.ctl"

    def start(self) -> None:
        conf = self.install(self.config, "bird.conf")
        self.socket.unlink(missing_ok=True)
        proc = self.spawn(["bird", "-f", *self.extra_args, "-c", str(conf), "-s", str(self.socket), "-P", str(self.workdir / "bird.pid")],
                          "bird.log")
        proc.wait_ready(self._up, self.start_timeout, f"BIRD socket {self.socket}")

    def _up(self) -> bool:
        return self.socket.exists() and "Daemon is up" in self.birdc("show status")

    def birdc(self, command: str, timeout: float = 10) -> str:
        """One birdc command; text output (BIRD has no JSON)."""
        result = subprocess.run(["birdc", "-s", str(self.socket), *command.split()], capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"birdc {command!r}: rc {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout
