"""`make install DESTDIR=...` into a throw-away root: every file, its mode, owner and content; the
sysusers.d and tmpfiles.d snippets applied to that root give the owners the daemon needs; a second
install keeps what the operator changed; `make uninstall` removes the rest and keeps config and state.

The virtualenv reuses this interpreter's packages (VENV_OPTS=--system-site-packages), so pip only
builds f2b-bgp itself, as `make test` does.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
VENV = "/opt/f2b-bgp"
# target path -> (mode, the repository file it is a copy of, or None when rendered)
FILES: dict[str, tuple[int, str | None]] = {
    "/etc/f2b-bgp/config.toml": (0o640, "f2b_bgp/config.example.toml"),
    "/usr/local/lib/sysusers.d/f2b-bgp.conf": (0o644, "docs/install/sysusers.f2b-bgp.conf"),
    "/usr/local/lib/tmpfiles.d/f2b-bgp.conf": (0o644, "docs/install/tmpfiles.f2b-bgp.conf"),
    "/usr/local/lib/systemd/system/f2b-bgp.service": (0o644, None),
    "/usr/local/lib/systemd/system/f2b-bgp-exabgp.service": (0o644, None),
    "/etc/iproute2/rt_protos.d/f2b-bgp.conf": (0o644, "docs/install/rt_protos.f2b-bgp.conf"),
    "/etc/fail2ban/action.d/bgp-blackhole.conf": (0o644, "fail2ban/action.d/bgp-blackhole.conf"),
    "/etc/fail2ban/action.d/bgp-blackhole.py": (0o644, "fail2ban/action.d/bgp-blackhole.py"),
    "/etc/fail2ban/filter.d/routeros-auth.conf": (0o644, "fail2ban/filter.d/routeros-auth.conf"),
    "/etc/fail2ban/jail.d/sshd-bgp-blackhole.conf": (0o644, "fail2ban/jail.d/sshd-bgp-blackhole.conf"),
    "/etc/fail2ban/jail.d/routeros-bgp-blackhole.conf": (0o644, "fail2ban/jail.d/routeros-bgp-blackhole.conf"),
    # rendered from the reference config, so equal to the shipped ones
    "/etc/exabgp/exabgp.conf": (0o644, "exabgp/exabgp.conf"),
    "/etc/exabgp/exabgp.env": (0o644, "exabgp/exabgp.env"),
    f"{VENV}/installed-files": (0o644, None),
}


def make(target: str, destdir: Path, *settings: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["make", "-s", "-C", str(REPO), target, f"DESTDIR={destdir}",
                             "VENV_OPTS=--system-site-packages", f"PYTHON={sys.executable}", *settings],
                            capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert result.returncode == 0, f"make {target}: rc {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def files_under(root: Path) -> set[str]:
    """Every file and link under root except the virtualenv's own tree, as target paths."""
    found = set()
    for path in root.rglob("*"):
        target = "/" + str(path.relative_to(root))
        if (path.is_file() or path.is_symlink()) and (not target.startswith(VENV + "/") or
                                                      target == f"{VENV}/installed-files"):
            found.add(target)
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def destdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("destdir")
    make("install", root)
    yield root


def test_every_file_with_its_mode_owner_and_content(destdir: Path) -> None:
    assert files_under(destdir) == set(FILES) | {"/usr/local/bin/f2b-bgp"}
    for target, (mode, source) in FILES.items():
        st = (destdir / target.lstrip("/")).lstat()
        assert stat.S_IMODE(st.st_mode) == mode, f"{target}: mode {oct(st.st_mode)}"
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), f"{target}: staged files keep the installer's owner"
        if source:
            assert (destdir / target.lstrip("/")).read_bytes() == (REPO / source).read_bytes(), target
    link = destdir / "usr/local/bin/f2b-bgp"
    assert link.is_symlink() and os.readlink(link) == f"{VENV}/bin/f2b-bgp"


def test_manifest_lists_every_installed_file_but_the_config(destdir: Path) -> None:
    lines = dict(reversed(line.split("  ", 1)) for line in (destdir / VENV.lstrip("/") / "installed-files")
                 .read_text().splitlines())
    assert set(lines) == set(FILES) - {"/etc/f2b-bgp/config.toml", f"{VENV}/installed-files"} | {"/usr/local/bin/f2b-bgp"}
    for target, digest in lines.items():
        assert digest == ("link" if target.endswith("bin/f2b-bgp") else sha256(destdir / target.lstrip("/"))), target


def test_units_point_at_the_virtualenv_and_verify(destdir: Path, tmp_path: Path) -> None:
    units = destdir / "usr/local/lib/systemd/system"
    service = (units / "f2b-bgp.service").read_text()
    assert f"ExecStart={VENV}/bin/f2b-bgp --config /etc/f2b-bgp/config.toml serve" in service
    assert "User=f2b-bgp" in service and "/usr/local/bin/" not in service
    assert f"ExecStart={VENV}/bin/exabgp --env-file" in (units / "f2b-bgp-exabgp.service").read_text()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    exabgp = Path(sys.executable).parent / "exabgp"  # with --system-site-packages it stays outside the venv
    for unit in ("f2b-bgp.service", "f2b-bgp-exabgp.service"):
        text = (units / unit).read_text().replace(f"{VENV}/bin/f2b-bgp", f"{destdir}{VENV}/bin/f2b-bgp")
        (tmp_path / unit).write_text(text.replace(f"{VENV}/bin/exabgp", str(exabgp)))
        result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_virtualenv_runs_the_installed_package(destdir: Path) -> None:
    venv = destdir / VENV.lstrip("/")
    assert (venv / "bin/f2b-bgp").read_text().startswith(f"#!{VENV}/bin/python\n")
    assert not [p for p in (venv / "bin").iterdir() if p.is_file() and str(destdir) in p.read_text(errors="replace")]
    where = subprocess.run([str(venv / "bin/python"), "-c", "import f2b_bgp; print(f2b_bgp.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd="/")
    assert where.stdout.startswith(str(venv / "lib")), where.stdout + where.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-sysusers"), reason="needs root and systemd-sysusers")
def test_sysusers_and_tmpfiles_snippets_give_the_daemon_its_owners(destdir: Path) -> None:
    subprocess.run(["systemd-sysusers", f"--root={destdir}"], check=True, capture_output=True, timeout=60)
    subprocess.run(["systemd-tmpfiles", f"--root={destdir}", "--create"], check=True, capture_output=True, timeout=60)
    passwd = (destdir / "etc/passwd").read_text().splitlines()
    user = next(line.split(":") for line in passwd if line.startswith("f2b-bgp:"))
    uid, gid, shell = int(user[2]), int(user[3]), user[6]
    assert uid < 1000 and shell == "/usr/sbin/nologin"
    expected = {"etc/f2b-bgp/config.toml": (0o640, 0, gid), "var/lib/f2b-bgp": (0o750, uid, gid),
                "run/f2b-bgp": (0o755, uid, gid)}
    for path, (mode, owner, group) in expected.items():
        st = (destdir / path).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (mode, owner, group), path


def test_reinstall_keeps_the_operators_files_and_uninstall_removes_the_rest(tmp_path: Path) -> None:
    make("install", tmp_path)
    etc = tmp_path / "etc"
    config = etc / "f2b-bgp/config.toml"
    # an edit, and a mistake that keeps ExaBGP's files from being rendered: the installed ones stay
    config.write_text(config.read_text().replace("max_rate = 600", "max_rate = 60") + '[colour]\nname = "red"\n')
    local = etc / "fail2ban/action.d/bgp-blackhole.local"
    local.write_text("[Init]\nsocket = /run/other.sock\n")
    jail = etc / "fail2ban/jail.d/sshd-bgp-blackhole.conf"
    jail.write_text(jail.read_text() + "bantime = 2h\n")
    before = (tmp_path / VENV.lstrip("/") / "installed-files").read_text()

    out = make("install", tmp_path).stdout
    assert "kept /etc/f2b-bgp/config.toml" in out and "kept /etc/fail2ban/jail.d/sshd-bgp-blackhole.conf" in out
    assert "not rendered /etc/exabgp, kept what is there: " in out and "colour: unknown key" in out
    assert (etc / "exabgp/exabgp.conf").read_bytes() == (REPO / "exabgp/exabgp.conf").read_bytes()
    assert "max_rate = 60\n" in config.read_text() and "bantime = 2h" in jail.read_text()
    assert local.read_text() == "[Init]\nsocket = /run/other.sock\n"
    assert (tmp_path / VENV.lstrip("/") / "installed-files").read_text() == before

    out = make("uninstall", tmp_path).stdout
    assert "kept /etc/fail2ban/jail.d/sshd-bgp-blackhole.conf (changed since it was installed)" in out
    left = {"/" + str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()}
    assert left == {"/etc/f2b-bgp/config.toml", "/etc/fail2ban/action.d/bgp-blackhole.local",
                    "/etc/fail2ban/jail.d/sshd-bgp-blackhole.conf"}


def test_exabgp_files_not_written_by_f2b_bgp_are_kept(tmp_path: Path) -> None:
    theirs = tmp_path / "etc/exabgp/exabgp.conf"
    theirs.parent.mkdir(parents=True)
    theirs.write_text("neighbor 192.0.2.9 { }\n")
    out = make("install", tmp_path).stdout
    assert "kept /etc/exabgp/exabgp.conf (not written by f2b-bgp)" in out
    assert theirs.read_text() == "neighbor 192.0.2.9 { }\n"
    assert (tmp_path / "etc/exabgp/exabgp.env").read_bytes() == (REPO / "exabgp/exabgp.env").read_bytes()


def test_prefix_and_venv_move_the_command_units_and_virtualenv(tmp_path: Path) -> None:
    make("install", tmp_path, "PREFIX=/usr", "VENV=/srv/f2b")
    link = tmp_path / "usr/bin/f2b-bgp"
    assert os.readlink(link) == "/srv/f2b/bin/f2b-bgp" and (tmp_path / "srv/f2b/bin/f2b-bgp").is_file()
    service = (tmp_path / "usr/lib/systemd/system/f2b-bgp.service").read_text()
    assert "ExecStart=/srv/f2b/bin/f2b-bgp --config /etc/f2b-bgp/config.toml serve" in service
    assert (tmp_path / "usr/lib/sysusers.d/f2b-bgp.conf").is_file() and (tmp_path / "usr/lib/tmpfiles.d/f2b-bgp.conf").is_file()
    assert not (tmp_path / "usr/local").exists() and not (tmp_path / "opt").exists()
    make("uninstall", tmp_path, "PREFIX=/usr", "VENV=/srv/f2b")
    assert not link.is_symlink() and not (tmp_path / "srv/f2b").exists()
    assert not (tmp_path / "usr/lib/systemd/system/f2b-bgp.service").exists()
