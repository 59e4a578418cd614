"""Reading the annotated case files in tests/data/: one case per line, `#` comments, `@directive args` lines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from netaddr import IPNetwork

from f2b_bgp.address import normalise
from f2b_bgp.guards import HostFacts, ProtectedPrefix


class Setting(Protocol):
    def apply(self, directive: str, args: list[str]) -> None: ...


@dataclass
class GuardSetting:
    """The directives every case file shares: @protected/@peer/@next-hop PREFIX [NAME], @host
    ADDRESS/LEN, @allow-special PREFIX. A file's own setting adds its directives on top."""

    protected: list[ProtectedPrefix] = field(default_factory=list)
    addresses: list[IPNetwork] = field(default_factory=list)
    allow: list[IPNetwork] = field(default_factory=list)

    def apply_guard(self, directive: str, args: list[str]) -> bool:
        """Apply a shared directive; False if it is none of them."""
        if directive in ("protected", "peer", "next-hop"):
            self.protected.append(ProtectedPrefix(normalise(args[0]), " ".join(args[1:]), directive))
        elif directive == "host":
            self.addresses.append(IPNetwork(args[0]))
        elif directive == "allow-special":
            self.allow.append(normalise(args[0]))
        else:
            return False
        return True

    def host(self) -> HostFacts:
        return HostFacts(tuple(self.addresses))


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
