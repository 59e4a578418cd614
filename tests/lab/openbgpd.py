"""OpenBGPD (portable, /usr/sbin/bgpd) in the foreground in a namespace: `bgpd -d -f CONF`."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .daemon import Daemon

CHROOT = Path("/run/openbgpd")  # home of _openbgpd; systemd normally creates it. Created if missing, left in place.


class OpenBgpd(Daemon):
    """config: path of a bgpd.conf, copied byte for byte into the work dir (mode 0600: bgpd refuses
    group/world-readable files). bgpd's control socket defaults to one shared path, so the fixture
    starts bgpd on a wrapper that sets `socket` in the work dir and `include`s the copy.
    """

    name = "openbgpd"

    def __init__(self, netns: str, config: Path, workdir: Path | None = None, start_timeout: float = 20,
                 extra_args: Sequence[str] = ()) -> None:
        super().__init__(netns, workdir)
        self.config, self.start_timeout = Path(config), start_timeout
        self.extra_args = list(extra_args)  # e.g. ("-D", "name=value") macro overrides
        self.socket = self.workdir / "bgpd.sock"

    def start(self) -> None:
        CHROOT.mkdir(mode=0o755, exist_ok=True)
        copy = self.install(self.config, "bgpd.conf", mode=0o600)
        own = re.search(r'^\s*socket\s+"([^"]+)"\s*$', copy.read_text(), re.MULTILINE)
        if own:  # the config names its socket: use it as is
            self.socket = Path(own[1])
        wrapper = self.workdir / "lab-bgpd.conf"
        wrapper.write_text("# written by tests/lab: private control socket, then the config under test\n"
                           + ("" if own else f'socket "{self.socket}"\n') + f'include "{copy}"\n')
        wrapper.chmod(0o600)
        self.socket.unlink(missing_ok=True)
        proc = self.spawn(["bgpd", "-d", "-v", *self.extra_args, "-f", str(wrapper)], "bgpd.log")
        proc.wait_ready(self._up, self.start_timeout, f"OpenBGPD socket {self.socket}")

    def _up(self) -> bool:
        return self.socket.exists() and self.bgpctl("show", "summary", json_output=False) is not None

    def bgpctl(self, *args: str, json_output: bool = True, timeout: float = 10) -> Any:
        """`bgpctl -s SOCK [-j] ARGS...`; parsed JSON by default, else text."""
        argv = ["bgpctl", "-s", str(self.socket), *(["-j"] if json_output else []), *args]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: rc {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
        return json.loads(result.stdout or "{}") if json_output else result.stdout
