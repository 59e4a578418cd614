"""Shipped fail2ban filters against annotated sample logs, the way fail2ban tests its own.

Each sample log in tests/data/logs/ is named after its filter in fail2ban/filter.d/;
every log line is preceded by a `# failJSON: {...}` line with the expected result
(fail2ban/tests/samplestestcase.py style): "match", and for matches "host", "time"
(UTC) and the captured F-* groups ("user", "service", "router").
"""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

import pytest

from tests.lab.fail2ban import SHIPPED, fail2ban_missing, run_filter

LOGS = Path(__file__).parents[1] / "data" / "logs"
pytestmark = pytest.mark.skipif(bool(fail2ban_missing()), reason=fail2ban_missing() or "fail2ban present")


def cases(log: Path) -> list[tuple[int, dict, str]]:
    """(line number, expectation, log line) for every failJSON-annotated line."""
    found, expect = [], None
    for number, line in enumerate(log.read_text().splitlines(), 1):
        if line.startswith("# failJSON:"):
            expect = json.loads(line.split(":", 1)[1])
        elif line.startswith("#") or not line.strip():
            continue
        else:
            assert expect is not None, f"{log.name}:{number}: log line without a failJSON annotation"
            found.append((number, expect, line))
            expect = None
    return found


SAMPLES = sorted(LOGS.iterdir())


def test_every_shipped_filter_has_a_sample_log() -> None:
    assert sorted(p.stem for p in (SHIPPED / "filter.d").glob("*.conf")) == sorted(p.name for p in SAMPLES)


@pytest.mark.parametrize("log", SAMPLES, ids=lambda p: p.name)
def test_sample_log(log: Path) -> None:
    annotated = cases(log)
    assert any(e["match"] for _, e, _ in annotated) and any(not e["match"] for _, e, _ in annotated)
    results = run_filter(log.name, [line for _, _, line in annotated])
    problems = []
    for (number, expect, line), got in zip(annotated, results, strict=True):
        desc = f"{log.name}:{number} ({expect.get('desc', '')})"
        if not expect["match"]:
            if got is not None:
                problems.append(f"{desc}: matched {got} but should not: {line}")
            continue
        if got is None:
            problems.append(f"{desc}: no match: {line}")
            continue
        wanted = {k: v for k, v in expect.items() if k not in ("match", "desc", "time")}
        have = {k: got.get(k) for k in wanted}
        if have != wanted:
            problems.append(f"{desc}: got {have}, expected {wanted}")
        if "time" in expect:
            when = calendar.timegm(time.strptime(expect["time"], "%Y-%m-%dT%H:%M:%S"))
            if int(got["time"]) != when:
                problems.append(f"{desc}: time {got['time']} != {expect['time']} ({when})")
    assert not problems, "\n".join(problems)
