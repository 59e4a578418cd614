"""A real fail2ban-server in the foreground with its own config dir, socket, database and log.

The config dir is Debian's stock filters and actions with our shipped fail2ban/
files copied over them byte for byte; the jail text is the test's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .daemon import Daemon
from .wait import wait_until

STOCK = Path("/etc/fail2ban")
SERVER_CONF = """[Definition]
loglevel = INFO
logtarget = {dir}/fail2ban.log
socket = {dir}/fail2ban.sock
pidfile = {dir}/fail2ban.pid
dbfile = {dir}/fail2ban.sqlite3
"""
JAIL_DEFAULTS = """[DEFAULT]
ignoreip =
backend = polling
"""


class Fail2ban(Daemon):
    """shipped: our fail2ban/ dir; jails: jail.local text where "{log}" is the watched log file and
    "{socket}" the f2b-bgp API socket (passed as socket=)."""

    name = "fail2ban"

    def __init__(self, shipped: Path, jails: str, socket: Path, netns: str | None = None,
                 workdir: Path | None = None) -> None:
        super().__init__(netns or "", workdir)
        self.netns = netns  # type: ignore[assignment]  (None: the root namespace; Unix sockets need no netns)
        self.conf = self.workdir / "etc"
        self.log = self.workdir / "watched.log"
        self.sock = self.workdir / "fail2ban.sock"
        for sub in ("filter.d", "action.d"):
            shutil.copytree(STOCK / sub, self.conf / sub)
            for source in sorted((shipped / sub).glob("*")):
                shutil.copyfile(source, self.conf / sub / source.name)
        (self.conf / "fail2ban.conf").write_text(SERVER_CONF.format(dir=self.workdir))
        (self.conf / "jail.conf").write_text(JAIL_DEFAULTS)
        (self.conf / "jail.local").write_text(jails.format(log=self.log, socket=socket))
        self.log.touch()

    def start(self) -> None:
        proc = self.spawn(["fail2ban-server", "-f", "-x", "-c", str(self.conf), "-s", str(self.sock),
                           "-p", str(self.workdir / "fail2ban.pid")], "server.out")
        proc.wait_ready(lambda: self.client("ping", check=False).returncode == 0, 30, "fail2ban-server ping")

    def stop(self) -> None:
        if any(p.alive() for p in self.processes):
            self.client("stop", check=False)
        super().stop()

    def client(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["fail2ban-client", "-c", str(self.conf), "-s", str(self.sock), *args],
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"fail2ban-client {' '.join(args)}: rc {result.returncode}: {result.stderr or result.stdout}"
                               f"\n{self.log_tail()}")
        return result

    def append_log(self, text: str) -> None:
        with open(self.log, "a") as out:
            out.write(text)

    def banned(self, jail: str) -> list[str]:
        return self.client("get", jail, "banip").stdout.split()

    def unban(self, jail: str, address: str) -> None:
        self.client("set", jail, "unbanip", address)
        wait_until(lambda: address not in self.banned(jail), 10, f"fail2ban unban {address}")
