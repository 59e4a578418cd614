"""API clients' bearer tokens: made here, stored only as a hash, checked in constant time (stdlib only).

A token is 32 random bytes, so a plain SHA-256 of it is as hard to reverse as
the token is to guess: no salt or slow hash is needed, and checking costs
microseconds per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

PREFIX = "f2b_"
TOKEN_BYTES = 32
# What a client may call; flush, sync and events act on (or show) every owner's bans: not for an own-claims token.
OPERATIONS = ("ping", "ban", "unban", "withdraw", "list", "show", "status", "flush", "sync", "events")
WIDE_OPERATIONS = frozenset({"flush", "sync", "events"})
EDGE_OPERATIONS = ("ping", "ban", "unban", "withdraw", "list", "show", "status")
MAX_TOKEN_TEXT = 128


@dataclass(frozen=True)
class Token:
    """One client of the HTTPS API and its scope."""

    name: str  # claims are recorded as NAME/JAIL
    sha256: str  # hex digest of the secret
    operations: tuple[str, ...] = EDGE_OPERATIONS
    own_claims_only: bool = True  # see, unban and withdraw only NAME/... claims
    max_claims: int = 10000  # active claims under NAME/
    max_rate: int = 600  # new claims per minute
    forbidden: tuple[str, ...] = ()  # prefixes (canonical text) it may not touch


def new_secret() -> str:
    return PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).decode().rstrip("=")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def authenticate(tokens: Iterable[Token], secret: str) -> Token | None:
    """The token whose hash matches; every stored hash is compared, each in constant time."""
    if not secret or len(secret) > MAX_TOKEN_TEXT:
        return None
    presented = digest(secret).encode()
    found = None
    for token in tokens:
        if hmac.compare_digest(presented, token.sha256.encode()):
            found = token
    return found


def config_lines(name: str, sha256: str) -> str:
    """The TOML block to paste into the central's config for a new token."""
    ops = ", ".join(f'"{op}"' for op in EDGE_OPERATIONS)
    return (f'[[api.tokens]]\nname = "{name}"\nsha256 = "{sha256}"\noperations = [{ops}]\n'
            "own_claims_only = true\nmax_claims = 10000\nmax_rate = 600\nforbidden = []\n")
