"""Storage faults for one daemon only: argv prefixes that give it a private mount namespace.

The daemon runs under `unshare --mount` with a mount of its own over one
directory (a tiny tmpfs, or a read-only bind of the directory itself). Nothing
is mounted where the host or another test can see it, and the mount goes away
with the daemon's process, even when a test fails or is killed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path


def _private(script: str, directory: Path) -> tuple[str, ...]:
    # sh -c SCRIPT DIR ARGV...: "$0" is the directory, "$@" the command, exec'd (same PID)
    return ("unshare", "--mount", "--propagation", "private", "sh", "-c", f'{script} && exec "$@"', str(directory))


def tmpfs(directory: Path, size: str) -> tuple[str, ...]:
    """Run with a tmpfs of SIZE (e.g. "512k") over DIRECTORY, seen by that process alone."""
    return _private(f'mount -t tmpfs -o size={size},mode=0755 f2b-lab "$0"', directory)


def read_only(directory: Path) -> tuple[str, ...]:
    """Run with DIRECTORY (and what is in it) mounted read-only for that process alone."""
    return _private('mount --bind "$0" "$0" && mount -o remount,ro,bind "$0"', directory)


def run_in_mounts_of(pid: int, argv: Sequence[str], check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ARGV in the mount namespace of process PID (to fill or free its private tmpfs)."""
    return subprocess.run(["nsenter", "--target", str(pid), "--mount", *argv], capture_output=True, text=True,
                          timeout=60, check=check)


def fill(pid: int, directory: Path) -> None:
    """Fill the file system of DIRECTORY, as PID sees it, to the last block."""
    run_in_mounts_of(pid, ["sh", "-c", f'cat /dev/zero > "{directory}/filler"'])
    free = run_in_mounts_of(pid, ["stat", "-f", "-c", "%a", str(directory)], check=True).stdout.strip()
    assert free == "0", f"{directory} still has {free} free blocks"


def free(pid: int, directory: Path) -> None:
    run_in_mounts_of(pid, ["rm", "-f", f"{directory}/filler"], check=True)
