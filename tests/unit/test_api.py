"""The API reads hostile bytes: every field is validated, answers keep request order."""

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from f2b_bgp import __version__
from f2b_bgp.api import MAX_LINE, ApiServer, handle_line
from f2b_bgp.service import Service

from .memory import make


def ask(tmp_path: Path, line: bytes) -> dict:
    service, _, _ = make(tmp_path)
    return asyncio.run(handle_line(service, line))


@pytest.mark.parametrize("line, code, words", [
    (b"not json\n", "usage", "not valid JSON"),
    (b"\xff\xfe\n", "usage", "not valid JSON"),
    (b"[1, 2]\n", "usage", "JSON object"),
    (b'{"op": "reboot"}\n', "usage", "unknown op"),
    (b'{"op": ["ban"]}\n', "usage", "unknown op"),
    (b'{"op": "ban"}\n', "usage", "'prefix' is required"),
    (b'{"op": "ban", "prefix": 203}\n', "usage", "must be a string"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "jail": "a\\nb"}\n', "usage", "'jail' contains control"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "jail": ""}\n', "usage", "'jail' must be 1 to 64"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "jail": "sshd expires=0 result=refused"}\n', "usage", "'jail' must be"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "jail": "ssh\\u2028d"}\n', "usage", "separator"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "jail": "ssh\\u0085d"}\n', "usage", "control"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "reason": "a\\u009b31m"}\n', "usage", "control"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "reason": "a\\u2029b"}\n', "usage", "separator"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "jail": "' + "\u00e9".encode() + b'"}\n', "usage", "'jail' must be"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "started": 1e400}\n', "usage", "finite"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "started": ' + b"9" * 400 + b'}\n', "usage", "between"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "bantime": ' + b"9" * 400 + b'}\n', "usage", "between"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "started": -1}\n', "usage", "between"),
    (b'{"op": "ban", "a": ' + b"[" * 30000 + b"]" * 30000 + b'}\n', "usage", "nested too deeply"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "reason": "' + b"x" * 300 + b'"}\n', "usage", "longer than"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "bantime": "60"}\n', "usage", "must be a number"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "bantime": true}\n', "usage", "must be a number"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "bantime": 1.5}\n', "usage", "whole number"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "bantime": -5}\n', "usage", "bantime"),
    (b'{"op": "ban", "prefix": "203.0.113.7", "started": NaN}\n', "usage", "finite"),
    (b'{"op": "ban", "prefix": "198.51.100.7"}\n', "refused", "protected"),
    (b'{"op": "ban", "prefix": "203.0.113.7; reboot"}\n', "refused", "input"),
    (b'{"op": "show", "prefix": "010.0.0.1"}\n', "refused", "input"),
])
def test_bad_requests_get_one_line_errors(tmp_path: Path, line: bytes, code: str, words: str) -> None:
    answer = ask(tmp_path, line)
    assert answer["ok"] is False and answer["code"] == code
    assert words in answer["error"] and "\n" not in answer["error"]


def converse(service: Service, path: Path, sent: bytes) -> list[dict]:
    """Start the API on PATH, send the bytes at once, and read every answer until the daemon closes."""
    async def scenario() -> list[dict]:
        server = ApiServer(service, path, 0o660, "")
        await server.start()
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(sent)
        writer.write_eof()
        answers = [json.loads(line) async for line in reader]
        writer.close()
        await server.stop()
        return answers

    return asyncio.run(scenario())


def test_socket_mode_and_ordered_pipelined_answers(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    path = tmp_path / "api.sock"
    requests = [{"op": "ban", "prefix": f"203.0.113.{i}", "jail": "t"} for i in range(1, 51)]
    requests.insert(10, {"op": "ban", "prefix": "bogus"})
    answers = converse(service, path, b"".join(json.dumps(r).encode() + b"\n" for r in requests))
    assert len(answers) == len(requests) and answers[10]["code"] == "refused"
    prefixes = [a["prefix"] for a in answers if a["ok"]]
    assert prefixes == [f"203.0.113.{i}/32" for i in range(1, 51)]
    assert len(backend.routes) == 50
    assert not path.exists()


def test_a_request_too_long_ends_the_connection_after_answering_those_before_it(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    answers = converse(service, tmp_path / "api.sock", b'{"op": "ban", "prefix": "203.0.113.1"}\n{"op": "ping"}\n'
                       + b"x" * (MAX_LINE + 1) + b'\n{"op": "ban", "prefix": "203.0.113.2"}\n')
    assert [a.get("prefix") or a.get("version") or a.get("error") for a in answers[:2]] == [
        "203.0.113.1/32", __version__]
    assert answers[2]["code"] == "usage" and f"longer than {MAX_LINE} bytes" in answers[2]["error"]
    assert len(answers) == 3 and backend.routes == {"203.0.113.1/32"}


def test_socket_is_created_with_the_configured_mode(tmp_path: Path) -> None:
    service, _, _ = make(tmp_path)
    path = tmp_path / "api.sock"

    async def scenario() -> int:
        server = ApiServer(service, path, 0o660, "")
        await server.start()
        mode = stat.S_IMODE(os.stat(path).st_mode)
        await server.stop()
        return mode

    assert asyncio.run(scenario()) == 0o660
