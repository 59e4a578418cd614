"""The README's quick start, as written, against a daemon with the reference config in a namespace.

The commands are read from the README's quick-start block; the config is
f2b_bgp/config.example.toml byte for byte except the daemon's socket and database,
which move into the test's work dir. `make install`, `systemctl` and
`fail2ban-client reload` are run by tests/live/test_install.py and
tests/live/test_fail2ban.py; `doctor` by tests/live/test_doctor.py.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from f2b_bgp.errors import ExitCode
from tests.lab.f2bbgp import F2bBgp
from tests.lab.netns import Topology
from tests.lab.peers import kernel_routes

REPO = Path(__file__).parents[2]
REFERENCE = (REPO / "f2b_bgp" / "config.example.toml").read_text()
ELSEWHERE = ("make ", "$EDITOR ", "systemctl ", "fail2ban-client ", "f2b-bgp doctor")


def quick_start() -> list[list[str]]:
    """The f2b-bgp commands of the README's quick start, in order, without their comments."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README.md has no quick-start block"
    lines = [line.split("#")[0].strip() for line in block.group(1).splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith(ELSEWHERE)]


def reference_config() -> str:
    text, moved = re.subn(r'^(socket|database) = ".*"$', lambda m: f'{m.group(1)} = "{{workdir}}/'
                          + ("api.sock" if m.group(1) == "socket" else "state.db") + '"', REFERENCE, flags=re.M)
    assert moved == 2, "the reference config's daemon.socket and daemon.database moved"
    return text


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Topology, F2bBgp]]:
    with Topology() as topology, F2bBgp(topology.ns("injector"), reference_config()) as daemon:
        yield topology, daemon


def test_the_quick_start_commands_work_as_written(lab: tuple[Topology, F2bBgp]) -> None:
    topology, daemon = lab
    commands = quick_start()
    assert [c[1] for c in commands] == ["check-config", "ban", "list", "show", "withdraw", "status"]
    expected = {
        "check-config": ": ok", "ban": "203.0.113.7/32 active until", "list": "203.0.113.7/32",
        "show": "203.0.113.7/32: blackholed", "withdraw": "203.0.113.7/32: withdrawn (removed cli)",
        "status": "routes: 0 active, 0 pending",
    }
    for argv in commands:
        assert argv[0] == "f2b-bgp"
        result = subprocess.run([sys.executable, "-m", "f2b_bgp", "--config", str(daemon.config), *argv[1:]],
                                capture_output=True, text=True, timeout=60, cwd=REPO)
        assert result.returncode == ExitCode.OK, (argv, result.stdout, result.stderr)
        assert expected[argv[1]] in result.stdout, (argv, result.stdout)
        routes = kernel_routes(topology, "injector")
        if argv[1] in ("ban", "list", "show"):
            assert routes["203.0.113.7/32"].type == "blackhole"
        if argv[1] == "withdraw":
            assert "203.0.113.7/32" not in routes
