"""The shipped systemd units parse: `systemd-analyze verify`, with the programs pointed at this install."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INSTALL = Path(__file__).parents[2] / "docs" / "install"
BIN = Path(sys.executable).parent


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", ["f2b-bgp.service", "f2b-bgp-exabgp.service"])
def test_unit_verifies(unit: str, tmp_path: Path) -> None:
    text = (INSTALL / unit).read_text()
    for program in ("f2b-bgp", "exabgp"):
        text = text.replace(f"/usr/local/bin/{program}", str(BIN / program))
    (tmp_path / unit).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / unit)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
