"""What an owner's name (a fail2ban jail, an edge host, an operator) and a ban's reason may contain.

Names end up bare in log lines, tables and fail2ban's own files, so they are
short ASCII tokens: letters, digits and . _ - @ : + / (for `web1/sshd`); no
spaces, controls or Unicode separators. Reasons are free text, but printable
on one line: no control characters (C0, C1 such as U+0085 and U+009B), no line
or paragraph separators (U+2028, U+2029), no format characters.
"""

from __future__ import annotations

import re
import unicodedata

NAME = re.compile(r"[A-Za-z0-9._@:+/-]{1,64}", re.ASCII)
NAME_RULE = "1 to 64 of A-Z a-z 0-9 . _ - @ : + /"
MAX_TEXT_BYTES = 256
_UNPRINTABLE = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def name_problem(text: str) -> str | None:
    """Why text is not a valid owner name, or None."""
    return None if NAME.fullmatch(text) else f"must be {NAME_RULE}"


def text_problem(text: str) -> str | None:
    """Why text is not a valid one-line free text, or None."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        return f"is longer than {MAX_TEXT_BYTES} bytes"
    if text.isascii() and text.isprintable():  # the common case, checked in C: no ASCII control characters
        return None
    if any(unicodedata.category(ch) in _UNPRINTABLE for ch in text):
        return "contains control, format or separator characters"
    return None
