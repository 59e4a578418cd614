"""Rewrite the shipped example snippets from the reference config: `python3 -m f2b_bgp.peering.regenerate [ROOT]`."""

from __future__ import annotations

import sys
from importlib.resources import as_file, files
from pathlib import Path

from f2b_bgp.config import Config, load_config

from . import render

# target -> directory of its shipped files, relative to the repository root
EXAMPLE_DIRS = {
    "frr": "frr-examples/firewall",
    "frr-injector": "frr-examples/injector",
    "bird": "bird-examples/firewall",
    "openbgpd": "openbgpd-examples",
    "routeros": "routeros-examples",
    "exabgp": "exabgp",
}


def reference_config() -> Config:
    with as_file(files("f2b_bgp").joinpath("config.example.toml")) as path:
        return load_config(path)


def reference_files(target: str) -> dict[Path, str]:
    """Shipped path (relative to the repository root) -> the text the generator makes for it."""
    return {Path(EXAMPLE_DIRS[target], name): text for name, text in render(target, reference_config()).items()}


def main(root: Path) -> None:
    for target in EXAMPLE_DIRS:
        for relative, text in reference_files(target).items():
            path = root / relative
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
                print(f"wrote {relative}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
