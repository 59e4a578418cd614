"""Common shape of a daemon fixture: a work dir, its processes, its logs."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from .process import Process, log_tail, make_workdir, remove_workdir


class Daemon:
    """Base: owns a temp work dir and the Processes it starts; stops them (reverse order) on exit."""

    name = "daemon"

    def __init__(self, netns: str, workdir: Path | None = None) -> None:
        self.netns = netns
        self._own_workdir = workdir is None
        self.workdir = workdir or make_workdir(f"{netns}-{self.name}")
        self.processes: list[Process] = []

    def install(self, source: Path, name: str, mode: int = 0o644) -> Path:
        """Copy a config file byte for byte into the work dir."""
        target = self.workdir / name
        shutil.copyfile(source, target)
        target.chmod(mode)
        return target

    def spawn(self, argv: Sequence[str], log_name: str, **kwargs: object) -> Process:
        proc = Process(argv, netns=self.netns, log=self.workdir / log_name, **kwargs).start()  # type: ignore[arg-type]
        self.processes.append(proc)
        return proc

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()

    def restart(self) -> None:
        """Stop every process (by PID) and start again in the same work dir, logs appended."""
        self.stop()
        self.processes.clear()
        self.start()

    def logs(self) -> list[Path]:
        return sorted(p for p in self.workdir.iterdir() if p.suffix in (".log", ".out") and p.stat().st_size)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(f"--- {path} ---\n{log_tail(path, lines)}" for path in self.logs())

    def __enter__(self):  # type: ignore[no-untyped-def]  (returns the subclass)
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            if self._own_workdir:
                remove_workdir(self.workdir)
