"""`make install` for real, as root, inside a private mount namespace: the daemon starts from the
installed tree as the unit runs it, bans, a newer version is installed over it, and the route and the
store survive the upgrade and the restart; `make uninstall` keeps config and state.

Nothing reaches the host: /etc, /opt, /usr/local, /var/lib, /var/log and /run are overlays whose upper layers
live on a tmpfs of the namespace, the routes go into a network namespace of their own, and the test
ends by checking that the host has no f2b-bgp user, directory or file. The virtualenv is made from
Debian's /usr/bin/python3 (the user f2b-bgp cannot reach an interpreter under /root) and pip gets the
dependencies as on a fresh Debian (here through the configured index and wheel dirs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.lab.fail2ban import Namespace
from tests.lab.process import Process

REPO = Path(__file__).parents[2]
OVERLAID = ("/etc", "/opt", "/usr/local", "/var/lib", "/var/log", "/run")
HOST_PATHS = ("/opt/f2b-bgp", "/etc/f2b-bgp", "/var/lib/f2b-bgp", "/run/f2b-bgp", "/usr/local/bin/f2b-bgp",
              "/usr/local/lib/systemd/system/f2b-bgp.service", "/etc/fail2ban/action.d/bgp-blackhole.conf",
              "/etc/exabgp/exabgp.conf")
ATTACKER = "203.0.113.7"
# what the unit does: User=/Group=f2b-bgp, AmbientCapabilities=CAP_NET_ADMIN CAP_CHOWN
AS_UNIT = ["setpriv", "--reuid=f2b-bgp", "--regid=f2b-bgp", "--init-groups", "--inh-caps=+net_admin,+chown",
           "--ambient-caps=+net_admin,+chown"]
SERVE = ["/opt/f2b-bgp/bin/f2b-bgp", "--config", "/etc/f2b-bgp/config.toml", "serve"]
# root's PATH on Debian, not this interpreter's (which may have an f2b-bgp of its own)
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def host_leftovers() -> list[str]:
    found = [p for p in HOST_PATHS if Path(p).exists() or Path(p).is_symlink()]
    if subprocess.run(["getent", "passwd", "f2b-bgp"], capture_output=True, timeout=30).returncode == 0:
        found.append("user f2b-bgp")
    return found


pytestmark = [
    pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs Debian's /usr/bin/python3"),
    pytest.mark.skipif(bool(host_leftovers()), reason=f"host already has f2b-bgp installed: {host_leftovers()}"),
]


class Sandbox:
    """A private mount namespace held open by one `cat`; commands enter it with nsenter."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.holder: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Sandbox:
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "cat"],
                                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        self.scratch.mkdir()
        mounts = [f"mount -t tmpfs f2b-install {self.scratch}"]
        for i, path in enumerate(OVERLAID):
            upper, work = self.scratch / f"upper{i}", self.scratch / f"work{i}"
            mounts += [f"mkdir {upper} {work}",
                       f"mount -t overlay f2b-install -o lowerdir={path},upperdir={upper},workdir={work} {path}"]
        self.run(["sh", "-ec", "; ".join(mounts)])
        return self

    def __exit__(self, *exc: object) -> None:
        if self.holder is not None:
            self.holder.stdin.close()  # type: ignore[union-attr]
            self.holder.wait(timeout=30)

    def argv(self, argv: Sequence[str], netns: str | None = None) -> list[str]:
        assert self.holder is not None
        return ["nsenter", "-t", str(self.holder.pid), "-m", *([f"--net=/run/netns/{netns}"] if netns else []),
                "--", *argv]

    def run(self, argv: Sequence[str], netns: str | None = None, check: bool = True,
            **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(self.argv(argv, netns), capture_output=True, text=True, timeout=600,
                                env={**os.environ, "PATH": PATH, **env})
        assert result.returncode == 0 or not check, \
            f"{' '.join(argv)}: rc {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def stat(self, path: str) -> str:
        return self.run(["stat", "-c", "%a %U %G", path]).stdout.strip()

    def exists(self, path: str) -> bool:
        return subprocess.run(self.argv(["test", "-e", path]), timeout=30).returncode == 0


def source_tree(target: Path, version: str) -> Path:
    """The repository's files as a release of VERSION would ship them."""
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    for name in ("pyproject.toml", "f2b_bgp/__init__.py"):
        path = target / name
        path.write_text(path.read_text().replace('"0.1.0"', f'"{version}"'))
    return target


def hidden(program: Path) -> bool:
    """Whether other users cannot reach PROGRAM: a directory above it without o+x (such as /root)."""
    return any(not d.stat().st_mode & 0o001 for d in program.resolve().parents)


def start_daemon(box: Sandbox, netns: str, log: Path) -> Process:
    mark = log.stat().st_size if log.exists() else 0
    proc = Process(box.argv([*AS_UNIT, *SERVE], netns), log=log).start()
    proc.wait_ready(lambda: "ready socket=" in log.read_text()[mark:], 60, "installed f2b-bgp ready")
    return proc


@pytest.fixture
def netns() -> Iterator[Namespace]:
    with Namespace("f2binst") as ns:
        yield ns


def test_install_ban_upgrade_keeps_route_and_store(tmp_path: Path, netns: Namespace) -> None:
    old, new = source_tree(tmp_path / "v1", "0.1.0"), source_tree(tmp_path / "v2", "0.1.1")
    pip = {"PIP_CACHE_DIR": str(tmp_path / "pip-cache")}
    make = ["make", "-s", "install", "PYTHON=/usr/bin/python3"]
    log = tmp_path / "daemon.log"
    daemon: Process | None = None
    with Sandbox(tmp_path / "scratch") as box:
        try:
            box.run(["touch", "/var/log/auth.log"])  # sshd's log: fail2ban's config test passes with the sshd jail

            # 005 an interpreter the daemon's user cannot run (this one, when it is under /root) is refused
            if hidden(Path(sys.executable)):
                pyenv = box.run(["make", "-s", "-C", str(old), "install", f"PYTHON={sys.executable}",
                                 "VENV_OPTS=--system-site-packages"], check=False, **pip)
                assert pyenv.returncode != 0 and "user f2b-bgp cannot run /opt/f2b-bgp/bin/f2b-bgp; make the " \
                    "virtualenv from a system interpreter: make install PYTHON=/usr/bin/python3" in pyenv.stderr, \
                    pyenv.stderr

            # 010 install (the virtualenv made again): user, directories, owners, the command on the PATH; the
            # sshd jail only, since fail2ban's config test fails without the RouterOS jail's log
            out = box.run([*make[:2], "-C", str(old), *make[2:]], **pip).stdout
            if shutil.which("fail2ban-client"):
                assert "not installed /etc/fail2ban/jail.d/routeros-bgp-blackhole.conf: fail2ban's config test fails " \
                       "with it (Failed during configuration: Have not found any log file for routeros jail)" in out, out
                assert not box.exists("/etc/fail2ban/jail.d/routeros-bgp-blackhole.conf")
                assert box.exists("/etc/fail2ban/jail.d/sshd-bgp-blackhole.conf")
            assert box.run(["getent", "passwd", "f2b-bgp"]).stdout.split(":")[6].strip() == "/usr/sbin/nologin"
            assert box.stat("/etc/f2b-bgp/config.toml") == "640 root f2b-bgp"
            assert box.stat("/var/lib/f2b-bgp") == "750 f2b-bgp f2b-bgp"
            assert box.stat("/run/f2b-bgp") == "755 f2b-bgp f2b-bgp"
            assert box.run(["f2b-bgp", "--version"]).stdout.strip() == "f2b-bgp, version 0.1.0"
            # the operator's one edit, which an upgrade must keep
            box.run(["sed", "-i", 's|^allow_special = .*|allow_special = ["203.0.113.0/25"]|',
                     "/etc/f2b-bgp/config.toml"])

            # 020 the daemon from the installed tree, as its unit runs it; a ban
            daemon = start_daemon(box, netns.name, log)
            box.run(["f2b-bgp", "ban", ATTACKER, "--jail", "sshd", "--bantime", "3600"])
            assert netns.routes() == {f"{ATTACKER}/32": "blackhole"}
            before = json.loads(box.run(["f2b-bgp", "list", "--json"]).stdout)
            assert box.stat("/var/lib/f2b-bgp/state.db").split()[1] == "f2b-bgp"

            # 030 a newer version over it, the daemon running: config kept, nothing withdrawn
            out = box.run([*make[:2], "-C", str(new), *make[2:]], **pip).stdout
            assert "kept /etc/f2b-bgp/config.toml" in out
            assert 'allow_special = ["203.0.113.0/25"]' in box.run(["cat", "/etc/f2b-bgp/config.toml"]).stdout
            assert netns.routes() == {f"{ATTACKER}/32": "blackhole"}

            # 040 the restart an init system does after an upgrade: the route stays throughout
            assert daemon.stop() == 0
            assert netns.routes() == {f"{ATTACKER}/32": "blackhole"}
            daemon = start_daemon(box, netns.name, log)
            status = json.loads(box.run(["f2b-bgp", "status", "--json"]).stdout)
            assert status["version"] == "0.1.1" and status["routes"] == {"active": 1, "pending": 0}
            assert json.loads(box.run(["f2b-bgp", "list", "--json"]).stdout) == before
            assert netns.routes() == {f"{ATTACKER}/32": "blackhole"}

            # 050 uninstall, after the flush docs/operations.md asks for, keeps config and state
            box.run(["f2b-bgp", "flush"])
            assert netns.routes() == {}
            assert daemon.stop() == 0
            daemon = None
            box.run(["make", "-s", "-C", str(new), "uninstall"])
            for gone in ("/opt/f2b-bgp", "/usr/local/bin/f2b-bgp", "/usr/local/lib/systemd/system/f2b-bgp.service",
                         "/etc/fail2ban/action.d/bgp-blackhole.conf", "/etc/fail2ban/jail.d/sshd-bgp-blackhole.conf",
                         "/etc/exabgp/exabgp.conf"):
                assert not box.exists(gone), f"{gone} left after uninstall"
            for kept in ("/etc/f2b-bgp/config.toml", "/var/lib/f2b-bgp/state.db"):
                assert box.exists(kept), f"{kept} removed by uninstall"
        finally:
            if daemon is not None:
                daemon.stop()
    assert host_leftovers() == []
