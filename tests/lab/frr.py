"""FRR (zebra, optional staticd, bgpd from /usr/lib/frr) in a namespace, as user frr."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .daemon import Daemon

FRR_DIR = Path("/usr/lib/frr")  # note: /usr/sbin/bgpd is OpenBGPD
ORDER = ("zebra", "staticd", "bgpd")


class Frr(Daemon):
    """configs: daemon name -> config file path, e.g. {"zebra": p1, "staticd": p2, "bgpd": p3}.

    Files are copied byte for byte into the work dir (FRR drops to user frr, which cannot read
    pytest's 0700 tmp tree). zebra is required; staticd and bgpd optional.
    """

    name = "frr"

    def __init__(self, netns: str, configs: Mapping[str, Path], workdir: Path | None = None,
                 start_timeout: float = 20, extra_args: Mapping[str, Sequence[str]] | None = None) -> None:
        unknown = set(configs) - set(ORDER)
        if unknown or "zebra" not in configs:
            raise ValueError(f"configs needs zebra and only {ORDER}; got {sorted(configs)}")
        super().__init__(netns, workdir)
        self.configs, self.start_timeout = dict(configs), start_timeout
        self.extra_args = {d: list(a) for d, a in (extra_args or {}).items()}  # per daemon, e.g. {"zebra": ["-r"]}

    def start(self) -> None:
        frr = pwd.getpwnam("frr")
        os.chown(self.workdir, frr.pw_uid, frr.pw_gid)
        for stale in ["zserv.api", *(f"{d}.vty" for d in ORDER), *(f"{d}.pid" for d in ORDER)]:
            (self.workdir / stale).unlink(missing_ok=True)  # a stale zserv.api fakes "zebra ready"
        for daemon in ORDER:
            if daemon in self.configs:
                conf = self.install(Path(self.configs[daemon]), f"{daemon}.conf")
                os.chown(conf, frr.pw_uid, frr.pw_gid)
                self._start(daemon, conf)

    def kill_daemon(self, daemon: str) -> None:
        """kill -9 one FRR daemon (the others run on), then start it again from the same config."""
        (proc,) = [p for p in self.processes if p.argv[0] == str(FRR_DIR / daemon) and p.alive()]
        proc.kill()
        self.processes.remove(proc)
        for stale in (f"{daemon}.vty", f"{daemon}.pid"):
            (self.workdir / stale).unlink(missing_ok=True)
        self._start(daemon, self.workdir / f"{daemon}.conf")

    def _start(self, daemon: str, conf: Path) -> None:
        d = self.workdir
        proc = self.spawn([str(FRR_DIR / daemon), "-f", str(conf), "--vty_socket", str(d), "-z", str(d / "zserv.api"),
                           "-i", str(d / f"{daemon}.pid"), "-P", "0", "--log", f"file:{d / daemon}.log",
                           "--log-level", "info", *self.extra_args.get(daemon, [])], f"{daemon}.out")
        ready = d / ("zserv.api" if daemon == "zebra" else f"{daemon}.vty")
        proc.wait_ready(ready.exists, self.start_timeout, f"FRR {daemon} socket {ready}")

    def vtysh(self, command: str, timeout: float = 10) -> str:
        """One vtysh command (vtysh only needs the socket dir, not the namespace)."""
        result = subprocess.run(["vtysh", "--vty_socket", str(self.workdir), "-c", command], capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"vtysh -c {command!r}: rc {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def vtysh_json(self, command: str) -> Any:
        """A `... json` command, parsed (an empty answer is {})."""
        return json.loads(self.vtysh(command) or "{}")
