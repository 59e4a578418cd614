"""One figure of a benchmark as one machine-readable line, next to the script's own output.

Each script calls figure() for every figure it measures; bench/run.py collects the
lines (prefixed MARK) from every script and prints them as one table. A figure is a
value against a baseline measured in the same run: a single pair, or one pair per
repetition (then the ratio is given as min/median/max over the repetitions).

    figure("bulk 2,000", "kernel + FRR: add", [3.1, 2.9], [1.2, 1.1], "s", target="<= 2")
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence

MARK = "@@ "


def figure(group: str, name: str, value: float | Sequence[float], baseline: float | Sequence[float], unit: str,
           *, base: str = "", target: str = "", higher_is_better: bool = False) -> None:
    """Print one figure: value over baseline (pairwise when both are per-repetition lists)."""
    values = [float(v) for v in value] if isinstance(value, Sequence) else [float(value)]
    baselines = [float(b) for b in baseline] if isinstance(baseline, Sequence) else [float(baseline)]
    if len(baselines) == 1 and len(values) > 1:
        baselines *= len(values)
    if len(values) != len(baselines):
        raise ValueError(f"{group}/{name}: {len(values)} values against {len(baselines)} baselines")
    ratios = [v / b if b else float("nan") for v, b in zip(values, baselines)]
    print(MARK + json.dumps({
        "group": group, "name": name, "unit": unit, "base": base, "target": target,
        "value": statistics.median(values), "baseline": statistics.median(baselines),
        "ratio": [min(ratios), statistics.median(ratios), max(ratios)], "reps": len(ratios),
        "higher_is_better": higher_is_better,
    }), flush=True)


def parse(line: str) -> dict | None:
    """The figure on a line printed by figure(), else None."""
    return json.loads(line[len(MARK):]) if line.startswith(MARK) else None
