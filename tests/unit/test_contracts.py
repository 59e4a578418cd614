"""docs/contracts.md is checked against the code: the exit codes, every op's result type, every type's fields."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path

import pytest

from f2b_bgp import model
from f2b_bgp.api import HANDLERS, handle_line
from f2b_bgp.errors import ExitCode

from .memory import make

DOC = (Path(__file__).parents[2] / "docs" / "contracts.md").read_text()


def rows(first_header: str) -> dict[str, str]:
    """The table whose header starts with first_header: first cell (backticks removed) -> the rest."""
    block = DOC.split(f"| {first_header} |", 1)[1].split("\n\n", 1)[0]
    found = {}
    for line in block.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        found[cells[0].strip("`")] = " | ".join(cells[1:])
    return found


def top_level_fields(text: str) -> list[str]:
    """The backticked names of a cell, leaving out what is inside parentheses."""
    depth, plain = 0, []
    for ch in text:
        depth += ch == "("
        if depth == 0:
            plain.append(ch)
        depth -= ch == ")"
    return re.findall(r"`(\w+)`", "".join(plain))


OPS = rows("op")
TYPES = rows("type")


def test_every_op_is_documented() -> None:
    assert set(OPS) == set(HANDLERS)


@pytest.mark.parametrize("name", sorted(TYPES))
def test_type_fields_match_the_model(name: str) -> None:
    cls = getattr(model, name)
    assert top_level_fields(TYPES[name]) == [f.name for f in dataclasses.fields(cls)]


def test_every_type_reachable_from_a_result_is_documented() -> None:
    seen: set[str] = set()
    todo = [getattr(model, cell.split("|")[-1].strip().strip("`")) for cell in OPS.values()]
    while todo:
        cls = todo.pop()
        if cls.__name__ in seen:
            continue
        seen.add(cls.__name__)
        for f in dataclasses.fields(cls):
            todo += [getattr(model, n) for n in re.findall(r"\b([A-Z]\w+)\b", str(f.type))
                     if dataclasses.is_dataclass(getattr(model, n, None)) and n != "Prefix"]
    assert seen == set(TYPES)


def test_route_states_are_documented() -> None:
    listed = DOC.split("RouteState values:", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"`(\w+)` \(", listed) == [s.value for s in model.RouteState]


def test_exit_codes_are_documented() -> None:
    table = rows("code")
    assert {int(k): v.split(" | ")[0] for k, v in table.items()} == {c.value: c.name for c in ExitCode}


@pytest.mark.parametrize("op, fields", [
    ("ping", {}), ("ban", {"prefix": "203.0.113.7"}), ("unban", {"prefix": "203.0.113.7"}),
    ("withdraw", {"prefix": "203.0.113.7"}), ("list", {}), ("show", {"prefix": "203.0.113.7"}),
    ("flush", {}), ("sync", {}), ("status", {}),
])
def test_each_answer_has_exactly_the_documented_fields(tmp_path: Path, op: str, fields: dict) -> None:
    service, _, _ = make(tmp_path)
    line = model.to_wire({"op": op, **fields})
    answer = asyncio.run(handle_line(service, __import__("json").dumps(line).encode()))
    cls = getattr(model, OPS[op].split("|")[-1].strip().strip("`"))
    assert answer.pop("ok") is True
    assert list(answer) == [f.name for f in dataclasses.fields(cls)]
