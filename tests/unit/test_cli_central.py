"""`f2b-bgp --url ... --token-file ...`: the CLI against a central's HTTPS API, exit codes as with the socket."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode

from .central import SECRETS, Pki, central_service, serving

REPO = Path(__file__).parents[2]


@pytest.fixture
def central(tmp_path: Path) -> Iterator[tuple[str, Pki, Path]]:
    """A central on loopback, served from its own event loop thread; yields its URL, the PKI, a token dir."""
    pki = Pki(tmp_path)
    ready: list[str] = []
    stop = threading.Event()

    async def serve() -> None:
        service = central_service(tmp_path, pki)  # its store belongs to this thread
        async with serving(service) as url:
            ready.append(url)
            while not stop.is_set():
                await asyncio.sleep(0.02)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        while not ready and thread.is_alive():
            thread.join(0.02)
        assert ready, "the central did not start"
        for name, secret in SECRETS.items():
            (tmp_path / f"{name}.token").write_text(secret + "\n")
        yield ready[0], pki, tmp_path
    finally:
        stop.set()
        thread.join(10)


def cli(url: str, token: Path, ca: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "f2b_bgp", "--url", url, "--token-file", str(token),
                           "--ca-file", str(ca), *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_ban_list_show_status_withdraw_against_a_central(central: tuple[str, Pki, Path]) -> None:
    url, pki, d = central
    ban = cli(url, d / "ops.token", pki.ca_file, "ban", "203.0.113.7", "--jail", "sshd", "--bantime", "600")
    assert ban.returncode == ExitCode.OK and "203.0.113.7/32 active" in ban.stdout, ban.stderr
    listing = cli(url, d / "ops.token", pki.ca_file, "list")
    assert "ops/sshd" in listing.stdout
    show = cli(url, d / "ops.token", pki.ca_file, "show", "203.0.113.7")
    assert "blackholed" in show.stdout and "banned by ops/sshd" in show.stdout
    assert "routes: 1 active" in cli(url, d / "ops.token", pki.ca_file, "status").stdout
    withdraw = cli(url, d / "ops.token", pki.ca_file, "withdraw", "203.0.113.7")
    assert withdraw.returncode == ExitCode.OK and "removed ops/sshd" in withdraw.stdout


@pytest.mark.parametrize("case, code, words", [
    ("wrong-ca", ExitCode.UNAVAILABLE, "TLS"),
    ("unknown-token", ExitCode.REFUSED, "no valid token"),
    ("out-of-scope", ExitCode.REFUSED, "may not call 'flush'"),
    ("protected", ExitCode.REFUSED, "protected"),
    ("no-token-file", ExitCode.USAGE, "cannot read the token file"),
])
def test_errors_exit_with_the_documented_codes(central: tuple[str, Pki, Path], case: str, code: int,
                                               words: str) -> None:
    url, pki, d = central
    (d / "unknown.token").write_text("f2b_nobody\n")
    args = {
        "wrong-ca": (d / "ops.token", pki.other_ca_file, "status"),
        "unknown-token": (d / "unknown.token", pki.ca_file, "status"),
        "out-of-scope": (d / "web1.token", pki.ca_file, "flush"),
        "protected": (d / "web1.token", pki.ca_file, "ban", "198.51.100.7"),
        "no-token-file": (d / "missing.token", pki.ca_file, "status"),
    }[case]
    result = cli(url, args[0], args[1], *args[2:])
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stderr and len(result.stderr.strip().splitlines()) <= 2, result.stderr


def test_the_thin_clients_do_not_import_aiohttp() -> None:
    code = ("import sys, f2b_bgp.cli, f2b_bgp.client, f2b_bgp.http_client, f2b_bgp.tokens; "
            "assert not any(m.split('.')[0] in ('aiohttp', 'prometheus_client') for m in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60).returncode == 0


def test_token_new_prints_a_secret_whose_hash_is_in_the_config_lines() -> None:
    import tomllib

    from f2b_bgp.config import parse_config
    from f2b_bgp.tokens import authenticate

    out = subprocess.run([sys.executable, "-m", "f2b_bgp", "token", "new", "web9"], capture_output=True, text=True,
                         timeout=60, cwd=REPO).stdout
    secret = [line for line in out.splitlines() if line.startswith("f2b_")][0]
    config = parse_config(tomllib.loads(out.split("\n", 2)[2].split("\n", 1)[1]))
    [token] = config.api.tokens
    assert authenticate(config.api.tokens, secret) == token and token.name == "web9"
    assert authenticate(config.api.tokens, secret + "x") is None
