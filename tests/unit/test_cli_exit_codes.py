"""Exit codes that need no running daemon, through the real console script."""

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

from f2b_bgp.errors import ExitCode

CLI = [sys.executable, "-m", "f2b_bgp"]


def f2b_bgp(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)


def test_help_lists_every_exit_code() -> None:
    out = f2b_bgp("--help").stdout
    for code in ExitCode:
        assert f"{code.value}  {code.name.lower()}:" in out


def test_version() -> None:
    result = f2b_bgp("--version")
    assert result.returncode == ExitCode.OK and "f2b-bgp, version" in result.stdout


def test_usage_error() -> None:
    result = f2b_bgp("ban")
    assert result.returncode == ExitCode.USAGE and "Missing argument" in result.stderr
    assert f2b_bgp("ban", "203.0.113.7", "--bantime", "soon").returncode == ExitCode.USAGE


def test_config_error_lists_every_problem_one_per_line(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[daemon]\nsocket_mode = 660\n[guards]\nprotected = ["10.0.0.1/8"]\ncolour = "red"\n')
    result = f2b_bgp("--config", str(config), "check-config")
    assert result.returncode == ExitCode.CONFIG
    lines = result.stderr.splitlines()
    assert any("daemon.socket_mode:" in line for line in lines)
    assert any("guards.protected[0]: host bits set" in line for line in lines)
    assert any("guards.colour: unknown key" in line for line in lines)
    assert "Traceback" not in result.stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[backends.kernel]\nprotocol = 186\n")
    result = f2b_bgp("--config", str(config), "serve")
    assert result.returncode == ExitCode.CONFIG and "belongs to FRR" in result.stderr


def test_daemon_unavailable(tmp_path: Path) -> None:
    result = f2b_bgp("--socket", str(tmp_path / "none.sock"), "status")
    assert result.returncode == ExitCode.UNAVAILABLE
    assert result.stderr.startswith("f2b-bgp: unavailable: daemon not reachable")


def test_internal_error_of_the_daemon_is_exit_1(tmp_path: Path) -> None:
    path = str(tmp_path / "fake.sock")
    reply = {"ok": False, "code": "error", "error": "internal error, see the daemon log"}
    server = fake_daemon(path, json.dumps(reply).encode() + b"\n")
    result = f2b_bgp("--socket", path, "list")
    server.close()
    assert result.returncode == ExitCode.ERROR and "internal error" in result.stderr


def test_peering_needs_a_peer_when_there_are_several(tmp_path: Path) -> None:
    variant = str(Path(__file__).parents[1] / "golden" / "peering" / "variant.toml")
    several = f2b_bgp("--config", variant, "peering", "frr")
    assert several.returncode == ExitCode.CONFIG and "choose one of: edge-a, edge-b" in several.stderr
    one = f2b_bgp("--config", variant, "peering", "frr", "--peer", "edge-a", "--output-dir", str(tmp_path))
    assert one.returncode == ExitCode.OK and (tmp_path / "bgpd.conf").exists()
    assert f2b_bgp("--config", variant, "peering", "juniper").returncode == ExitCode.USAGE


def fake_daemon(path: str, reply: bytes | None, asked: threading.Event | None = None) -> socket.socket:
    """A socket that reads one request (then sets ASKED) and answers REPLY (None: never answers)."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(4096)
        if asked is not None:
            asked.set()
        if reply is None:
            threading.Event().wait(60)  # hold the connection open: a closed one would answer EOF
        else:
            conn.sendall(reply)
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    return server


def test_an_unexpected_failure_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = str(tmp_path / "garbled.sock")
    server = fake_daemon(path, b"this is not json\n")
    result = f2b_bgp("--socket", path, "status")
    server.close()
    assert result.returncode == ExitCode.ERROR
    assert result.stderr.startswith("f2b-bgp: error: internal error: JSONDecodeError")
    assert len(result.stderr.splitlines()) == 1 and "--debug" in result.stderr
    assert "Traceback" in f2b_bgp("--debug", "--socket", path, "status").stderr


def test_interrupt_is_exit_130(tmp_path: Path) -> None:
    path, asked = str(tmp_path / "silent.sock"), threading.Event()
    server = fake_daemon(path, None, asked)
    # a shell's background job starts with SIGINT ignored, and Python then keeps ignoring it: restore it
    proc = subprocess.Popen([*CLI, "--socket", path, "status"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert asked.wait(20), "the CLI never sent its request"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == ExitCode.INTERRUPTED
    assert proc.stderr.read().strip() == "f2b-bgp: interrupted"
    server.close()


def test_serve_with_an_unusable_database_is_one_line_and_exit_8(tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\nsocket = "{tmp_path}/api.sock"\ndatabase = "{tmp_path}/not-a-dir/state.db"\n'
                      '[guards]\nprotected = ["198.51.100.0/24"]\n[bgp]\nnext_hop_ipv4 = "198.51.100.2"\n'
                      'next_hop_ipv6 = "2001:db8:1::2"\n[backends.kernel]\nenabled = false\n'
                      f'[backends.exabgp]\nenabled = true\nbridge_socket = "{tmp_path}/exabgp.sock"\n')
    result = f2b_bgp("--config", str(config), "serve")
    assert result.returncode == ExitCode.STORE, result.stderr
    assert result.stderr.startswith(f"f2b-bgp: store: store {tmp_path}/not-a-dir/state.db unusable")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 2  # the message and its hint
