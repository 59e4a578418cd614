"""fail2ban for the lab: its Python library (Debian's, under /usr/bin/python3), filter runs, a real server.

fail2ban is not a dependency of f2b-bgp: Debian installs it for the system
python3 only. Unit tests import it through a directory holding nothing but a
link to the fail2ban package (fail2ban_importable: no other dist-packages leak
into the test interpreter); filter tests run it under the system python3
(run_filter); live tests, the demo and the bench start the real
`fail2ban-server` (Fail2banServer).

Fail2banServer: a foreground fail2ban-server with its own conf dir, socket,
pid file, database and log. Its conf dir is Debian's stock jail.conf,
paths-*.conf, filter.d and action.d, with our shipped fail2ban/action.d,
filter.d and jail.d copied over them byte for byte; the caller adds only
jail.local and action.d/*.local (fail2ban's documented override files).

Namespace: one bare network namespace (lo up) for a daemon's kernel routes,
when the four-node Topology is more than a test needs.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .daemon import Daemon
from .wait import wait_until

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "fail2ban"
STOCK = Path("/etc/fail2ban")
SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_LIB = Path("/usr/lib/python3/dist-packages")
FAIL2BAN_SERVER = shutil.which("fail2ban-server") or "/usr/bin/fail2ban-server"
FAIL2BAN_CLIENT = shutil.which("fail2ban-client") or "/usr/bin/fail2ban-client"

SERVER_CONF = """[Definition]
loglevel = INFO
logtarget = {dir}/fail2ban.log
socket = {dir}/fail2ban.sock
pidfile = {dir}/fail2ban.pid
dbfile = {dir}/fail2ban.sqlite3
dbpurgeage = 1d
syslogsocket = auto
allowipv6 = auto
"""


def fail2ban_missing() -> str:
    """Why fail2ban cannot be used here ("" if it can)."""
    if not (SYSTEM_LIB / "fail2ban").is_dir():
        return f"fail2ban not installed ({SYSTEM_LIB / 'fail2ban'} missing)"
    if not Path(FAIL2BAN_SERVER).exists():
        return "fail2ban-server not found"
    return ""


@contextlib.contextmanager
def fail2ban_importable() -> Iterator[None]:
    """Make `import fail2ban` work in this interpreter, and nothing else from dist-packages."""
    with tempfile.TemporaryDirectory(prefix="f2b-lib-") as tmp:
        os.symlink(SYSTEM_LIB / "fail2ban", Path(tmp) / "fail2ban")
        sys.path.insert(0, tmp)
        try:
            yield
        finally:
            sys.path.remove(tmp)
            for name in [m for m in sys.modules if m == "fail2ban" or m.startswith("fail2ban.")]:
                del sys.modules[name]


# --- filters -------------------------------------------------------------------------------

_FILTER_RUNNER = r"""
import json, sys
from fail2ban.client.filterreader import FilterReader
from fail2ban.server.filter import Filter

basedir, name = sys.argv[1], sys.argv[2]
flt = Filter(None)
flt.returnRawHost = True
flt.checkAllRegex = True
flt.checkFindTime = False
reader = FilterReader(name, "test", {}, basedir=basedir)
if not reader.read():
    sys.exit("cannot read filter %s" % name)
reader.getOptions({})
for opt in reader.convert():
    if opt[0] not in ("set", "multi-set"):
        continue
    for value in (opt[3] if opt[0] == "multi-set" else [opt[3]]):
        if opt[2] == "addfailregex": flt.addFailRegex(value)
        elif opt[2] == "addignoreregex": flt.addIgnoreRegex(value)
        elif opt[2] == "prefregex": flt.prefRegex = value
        elif opt[2] == "datepattern": flt.setDatePattern(value)
        elif opt[2] == "maxlines": flt.setMaxLines(int(value))
out = []
for line in json.load(sys.stdin):
    found = flt.processLine(line)
    if not found:
        out.append(None)
        continue
    _, host, when, data = found[0][:4]
    fields = {k: v for k, v in data.items() if k not in ("matches", "ip4", "ip6") and v is not None}
    out.append({"host": str(host), "time": when, **fields})
print(json.dumps(out))
"""


def run_filter(name: str, lines: Sequence[str], filter_dir: Path = SHIPPED / "filter.d") -> list[dict | None]:
    """Run shipped filter `name` over lines with fail2ban's own Filter (system python3, TZ=UTC).

    Returns per line None (no match) or {"host", "time", <F-* groups in lower case>}.
    """
    with tempfile.TemporaryDirectory(prefix="f2b-filter-") as tmp:
        shutil.copytree(STOCK / "filter.d", Path(tmp) / "filter.d")
        for source in filter_dir.glob("*.conf"):
            shutil.copyfile(source, Path(tmp) / "filter.d" / source.name)
        result = subprocess.run([SYSTEM_PYTHON, "-c", _FILTER_RUNNER, tmp, name], input=json.dumps(list(lines)),
                                capture_output=True, text=True, timeout=60, env={**os.environ, "TZ": "UTC"})
    if result.returncode != 0:
        raise RuntimeError(f"filter runner failed: {result.stderr}")
    return json.loads(result.stdout)


# --- a real server ----------------------------------------------------------------------------

class Fail2banServer(Daemon):
    """fail2ban-server -f -x in the root namespace (Unix sockets need no netns).

    jail_local: text of jail.local ("{dir}" becomes the work dir).
    action_locals: {"bgp-blackhole.local": text} written to action.d/.
    env: extra environment of the server (e.g. F2B_BGP_SOCKET and F2B_BGP_QUEUE for the Python action).
    log_files: names of the (empty) log files the jails watch, created in the work dir.
    """

    name = "fail2ban"

    def __init__(self, jail_local: str, action_locals: Mapping[str, str] | None = None,
                 env: Mapping[str, str] | None = None, log_files: Sequence[str] = (),
                 workdir: Path | None = None) -> None:
        super().__init__("", workdir)
        self.netns = None  # type: ignore[assignment]
        self.env = dict(env or {})
        self.conf = self.workdir / "etc"
        self.sock = self.workdir / "fail2ban.sock"
        self.log = self.workdir / "fail2ban.log"
        self.conf.mkdir()
        for name in ("jail.conf", "paths-common.conf", "paths-debian.conf"):
            shutil.copyfile(STOCK / name, self.conf / name)
        for sub in ("filter.d", "action.d"):
            shutil.copytree(STOCK / sub, self.conf / sub)
        (self.conf / "jail.d").mkdir()
        for sub in ("filter.d", "action.d", "jail.d"):
            for source in sorted((SHIPPED / sub).glob("*")):
                shutil.copyfile(source, self.conf / sub / source.name)
        (self.conf / "fail2ban.conf").write_text(SERVER_CONF.format(dir=self.workdir))
        (self.conf / "jail.local").write_text(jail_local.replace("{dir}", str(self.workdir)))
        for name in log_files:
            (self.workdir / name).touch()
        for name, text in (action_locals or {}).items():
            (self.conf / "action.d" / name).write_text(text.replace("{dir}", str(self.workdir)))

    def start(self) -> None:
        proc = self.spawn([FAIL2BAN_SERVER, "-f", "-x", "-c", str(self.conf), "-s", str(self.sock),
                           "-p", str(self.workdir / "fail2ban.pid")], "server.out", env=self.env)
        proc.wait_ready(lambda: self.client("ping", check=False).returncode == 0, 30, "fail2ban-server ping")

    def stop(self) -> None:
        """fail2ban-client stop (flush + actionstop run), then wait for the PID to end."""
        running = [p for p in self.processes if p.alive()]
        if running:
            self.client("stop", check=False)
            for proc in running:
                wait_until(lambda: not proc.alive(), 60, "fail2ban-server exit")
        super().stop()
        self.processes.clear()

    def client(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([FAIL2BAN_CLIENT, "-c", str(self.conf), "-s", str(self.sock), *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"fail2ban-client {' '.join(args)}: rc {result.returncode}: "
                               f"{result.stderr or result.stdout}\n{self.log_tail()}")
        return result

    def banned(self, jail: str) -> list[str]:
        return self.client("get", jail, "banip").stdout.split()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def logs(self) -> list[Path]:
        return [p for p in (self.log, self.workdir / "server.out") if p.exists() and p.stat().st_size]


def append(path: Path, lines: Sequence[str]) -> None:
    with open(path, "a") as out:
        out.write("".join(line + "\n" for line in lines))


# --- one network namespace for the daemon's kernel routes --------------------------------------

class Namespace:
    """`ip netns add <unique name>` with lo up; deleted on exit. routes(): our blackholes in it."""

    def __init__(self, label: str = "f2b") -> None:
        self.name = f"{label}{secrets.token_hex(3)}"
        self.created = False

    def __enter__(self) -> Namespace:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True, timeout=30)
        self.created = True
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
            self.created = False

    def routes(self, protocol: int = 201) -> dict[str, str]:
        """prefix -> route type, for both families, of routes with our protocol number."""
        found: dict[str, str] = {}
        for family in ("-4", "-6"):
            out = subprocess.run(["ip", "-n", self.name, family, "-j", "route", "show", "proto", str(protocol)],
                                 check=True, capture_output=True, text=True, timeout=30).stdout
            for route in json.loads(out or "[]"):
                found[str(ipaddress.ip_network(route["dst"]))] = route.get("type", "unicast")
        return found
