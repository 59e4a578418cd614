"""A process that is not ExaBGP's bridge knocks on the bridge socket (tests/lab/_impostor_main.py).

uid None: as the caller (root). Otherwise as that uid with no capability but the one to read and
search files (so it can run this checkout's Python), plus the one to open any file if `override`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

_MAIN = Path(__file__).with_name("_impostor_main.py")


@dataclass(frozen=True)
class Knock:
    pid: int
    uid: int
    connect_error: str  # why connect() failed ("" if it connected)
    closed: bool  # the daemon hung up on it


def knock(socket_path: Path, uid: int | None = None, override: bool = False) -> Knock:
    argv = [sys.executable, "-I", str(_MAIN), str(socket_path)]
    if uid is not None:
        caps = "+dac_read_search" + (",+dac_override" if override else "")
        argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", f"--inh-caps=-all,{caps}",
                f"--ambient-caps={caps}", "--bounding-set=-all," + caps, *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{argv}: rc {result.returncode}: {result.stderr}"
    return Knock(**json.loads(result.stdout))
