"""Run the benchmarks and print one table of every figure as a ratio against its baseline from the same run.

Each script in bench/ runs as it would alone (its own output passes through); the
lines it prints with bench/report.py are collected and printed at the end as one
table: group, figure, value, baseline, and the ratio value/baseline as min/median/max
over the script's repetitions (one number where it measures once). A script that
fails or overruns its time limit is reported and the others still run; the exit
status is then 1.

Run as root: python3 bench/run.py [--full] [SCRIPT ...]
  (default sizes: about 5 minutes on 2 cores; --full: bulk 100,000 x 3, bulk through
   ExaBGP 100,000 x 1, scale at 100,000 and 1,000,000, kernel routes at 100,000;
   SCRIPT: run only these, e.g. bulk)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from report import parse

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# (script, argv) in running order; each figure of issue 14 comes from one of these
QUICK: list[tuple[str, list[str]]] = [
    ("api_throughput", ["5000"]),
    ("fail2ban_actions", [os.environ.get("F2B_BENCH_BANS", "200"), "1000"]),
    ("fail2ban_latency", ["100"]),
    ("kernel_routes", ["20000"]),
    ("bulk", ["10000", "3"]),
    ("exabgp_bulk", ["10000", "1"]),
    ("exabgp_batch", ["2000"]),
    ("scale", ["100000"]),
    ("https_api", ["1000"]),
    ("central_latency", ["30"]),
]
FULL: dict[str, list[str]] = {"bulk": ["100000", "3"], "exabgp_bulk": ["100000", "1"],  # ~5 min a repetition
                              "scale": ["100000", "1000000"], "kernel_routes": ["100000"]}
LIMIT = {"quick": 300, "full": 3600}  # seconds per script


def run(script: str, argv: list[str], limit: float) -> tuple[list[dict], str, float]:
    """(figures, failure or "", seconds) of one script, its output passed through."""
    command = [sys.executable, str(BENCH / f"{script}.py"), *argv]
    print(f"\n== {' '.join(['bench/' + script + '.py', *argv])}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    figures: list[dict] = []
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT, start_new_session=True)
    timer = _Alarm(proc, limit)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if (found := parse(line)) is not None:
                figures.append(found)
        code = proc.wait()
    except KeyboardInterrupt:  # the script is in its own session: pass the interrupt on, let it clean up
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        raise
    finally:
        timer.cancel()
    seconds = time.monotonic() - start
    if timer.fired:
        return figures, f"stopped after {limit:g} s", seconds
    return figures, (f"exit status {code}" if code else ""), seconds


class _Alarm:
    """SIGINT to the script after limit seconds (KeyboardInterrupt: its with-blocks and finally clauses remove
    its namespaces and processes), SIGKILL to its process group if it is still there 60 s later."""

    def __init__(self, proc: subprocess.Popen[str], limit: float) -> None:
        self.proc, self.fired, self.done = proc, False, threading.Event()
        self.thread = threading.Thread(target=self._watch, args=(limit,), daemon=True)
        self.thread.start()

    def _watch(self, limit: float) -> None:
        if self.done.wait(limit):
            return
        self.fired = True
        self.proc.send_signal(signal.SIGINT)
        if not self.done.wait(60) and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group start_new_session made for this script

    def cancel(self) -> None:
        self.done.set()
        self.thread.join()


def number(value: float) -> str:
    if value != value:  # nan
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def ratio(value: float) -> str:
    return "-" if value != value else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def table(figures: list[dict]) -> str:
    """The figures as one Markdown table (also readable in a terminal)."""
    rows = [("group", "figure", "value", "baseline", "ratio min", "median", "max", "target")]
    for f in figures:
        low, mid, high = f["ratio"]
        better = " (higher is better)" if f["higher_is_better"] else ""
        ratios = (ratio(low), ratio(mid), ratio(high)) if f["reps"] > 1 else ("", ratio(mid), "")
        rows.append((f["group"], f["name"] + better, f"{number(f['value'])} {f['unit']}",
                     f"{number(f['baseline'])} {f['unit']} ({f['base']})", *ratios, f["target"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main() -> None:
    args = sys.argv[1:]
    full = "--full" in args
    only = [a.removesuffix(".py").removeprefix("bench/") for a in args if not a.startswith("--")]
    plan = [(s, FULL.get(s, argv) if full else argv) for s, argv in QUICK if not only or s in only]
    if unknown := set(only) - {s for s, _ in QUICK}:
        raise SystemExit(f"no such benchmark: {', '.join(sorted(unknown))}")
    figures: list[dict] = []
    problems: list[str] = []
    timings: list[str] = []
    began = time.monotonic()
    for script, argv in plan:
        found, failure, seconds = run(script, argv, LIMIT["full" if full else "quick"])
        figures += found
        timings.append(f"{script} {seconds:.0f} s")
        if failure or not found:
            problems.append(f"bench/{script}.py {' '.join(argv)}: {failure or 'no figures (skipped?)'}")
    print(f"\n== every figure: value / baseline, both measured in the same run "
          f"(ratio min/median/max over repetitions where the script repeats; lower is better unless marked)\n")
    print(table(figures))
    print(f"\nrun time {time.monotonic() - began:.0f} s: {', '.join(timings)}")
    for problem in problems:
        print(f"NOT MEASURED: {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmarks run daemons in throw-away network namespaces")
    main()
