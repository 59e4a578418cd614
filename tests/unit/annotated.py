"""Reading the annotated case files in tests/data/: one case per line, `#` comments, `@directive args` lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol


class Setting(Protocol):
    def apply(self, directive: str, args: list[str]) -> None: ...


def case_lines(path: Path, setting: Setting, pattern: re.Pattern[str], shape: str) -> Iterator[tuple[int, re.Match[str]]]:
    """(line number, match) for each case line; directives change SETTING for the lines below them."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("@"):
            directive, *args = line.split("#", 1)[0].split()
            setting.apply(directive[1:], args)
            continue
        match = pattern.fullmatch(line)
        if not match:
            raise ValueError(f"{path.name}:{number}: not '{shape}': {line!r}")
        yield number, match
