"""key=value log lines whose values cannot forge another field or line."""

from __future__ import annotations

import json
import re

_BARE = re.compile(r"[A-Za-z0-9_.:/@+*,-]{1,200}", re.ASCII)


def value(item: object) -> str:
    """Bare when it is a plain token, else a JSON string (quotes, spaces and controls escaped)."""
    text = f"{item:.0f}" if isinstance(item, float) else str(item)
    return text if _BARE.fullmatch(text) else json.dumps(text[:512], ensure_ascii=True)


def kv(event: str, **fields: object) -> str:
    return " ".join([event, *(f"{key}={value(item)}" for key, item in fields.items())])
