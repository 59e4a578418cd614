"""A foreground process inside a network namespace, stopped by its own PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .wait import wait_until

# every Process still running, so a Topology can stop the ones left in its namespaces
_RUNNING: list[Process] = []


def netns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """argv run inside `netns` (`ip netns exec` execs, so the PID is the command's own)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def make_workdir(label: str) -> Path:
    """A fresh temp dir readable by daemons that drop privileges (pytest's tmp tree is 0700)."""
    path = Path(tempfile.mkdtemp(prefix=f"f2b-lab-{label}-"))
    path.chmod(0o755)
    return path


def remove_workdir(path: Path) -> None:
    """Remove a workdir unless F2B_LAB_KEEP=1 (then print where it is, for debugging)."""
    if os.environ.get("F2B_LAB_KEEP") == "1":
        print(f"f2b-lab: kept {path}")
        return
    shutil.rmtree(path, ignore_errors=True)


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"(no log {path}: {exc.strerror})"
    return "\n".join(text[-lines:])


class Process:
    """Run argv in the foreground (optionally inside a netns), stdout+stderr to a log file.

    Its own session/process group, so a terminal's Ctrl-C reaches only the test
    runner, which then stops it here. Stop: SIGTERM, wait `stop_timeout`, then
    SIGKILL; children left in its process group (e.g. OpenBGPD's) are killed by
    that group id, which is the PID we started.

    log: where stdout+stderr go (appended); default a temp dir removed on stop.
    """

    def __init__(self, argv: Sequence[str], netns: str | None = None, log: Path | None = None,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None, stop_timeout: float = 10.0) -> None:
        self.argv, self.netns, self.env, self.cwd = list(argv), netns, env, cwd
        self._own_dir = None if log else make_workdir("process")  # removed on stop
        self.log = log or self._own_dir / "process.log"  # type: ignore[operator]
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "process not started"
        return self.proc.pid

    def start(self) -> Process:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(netns_argv(self.netns, self.argv), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=self.cwd, start_new_session=True)
        _RUNNING.append(self)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> bool:
        """True while running; AssertionError with the log tail once it has exited (for wait_until)."""
        if not self.alive():
            rc = self.proc.returncode if self.proc else None
            raise AssertionError(f"{self.argv[0]} exited (rc={rc}); log {self.log}:\n{self.log_tail()}")
        return True

    def wait_ready(self, ready: Callable[[], object], timeout: float, what: str) -> None:
        """Wait until `ready()` is truthy, failing at once (with the log) if the process dies."""
        def probe() -> object:
            self.check_alive()
            return ready()
        try:
            wait_until(probe, timeout, what)
        except AssertionError as exc:
            if not self.alive():  # check_alive's message already carries the log
                raise
            raise AssertionError(f"{exc}\n--- {self.log} ---\n{self.log_tail()}") from None

    def stop(self) -> int | None:
        """Stop by PID; returns the exit code (None if never started). Idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM, group=False)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL, group=True)
                self.proc.wait(timeout=10)
        self._reap_group()
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self._own_dir is not None:
            remove_workdir(self._own_dir)
        return self.proc.returncode

    def kill(self, sig: int = signal.SIGKILL) -> int | None:
        """Send sig to the PID only (a crash test: no cleanup by the daemon), then reap it and its group."""
        if self.proc is None:
            return None
        self._signal(sig, group=False)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            return self.stop()
        return None

    def _signal(self, sig: int, group: bool) -> None:
        try:
            (os.killpg if group else os.kill)(self.proc.pid, sig)  # type: ignore[union-attr]
        except ProcessLookupError:
            pass

    def _reap_group(self) -> None:
        """Children that outlive the leader (same group id = our PID): give them 3 s, then SIGKILL."""
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)  # type: ignore[union-attr]
            except ProcessLookupError:
                return
            time.sleep(0.05)
        self._signal(signal.SIGKILL, group=True)

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log, lines)

    def __enter__(self) -> Process:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_processes_in(namespaces: Sequence[str]) -> None:
    """Stop every Process still running in one of these namespaces (a forgotten `with`)."""
    for proc in [p for p in _RUNNING if p.netns in namespaces]:
        proc.stop()
