"""SQLite state: who claims which prefix until when, each backend's view, and an event log.

Only the daemon writes it. WAL with synchronous=NORMAL: every committed
transaction survives a crash of the process (kill -9); a power cut may lose
the last ones.
"""

from __future__ import annotations

import sqlite3
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    prefix  TEXT NOT NULL,
    jail    TEXT NOT NULL,
    reason  TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    expires REAL,
    PRIMARY KEY (prefix, jail)
);
CREATE INDEX IF NOT EXISTS claims_expires ON claims (expires);
CREATE TABLE IF NOT EXISTS routes (
    prefix  TEXT NOT NULL,
    backend TEXT NOT NULL,
    state   TEXT NOT NULL,
    error   TEXT NOT NULL DEFAULT '',
    updated REAL NOT NULL,
    PRIMARY KEY (prefix, backend)
);
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY,
    ts     REAL NOT NULL,
    event  TEXT NOT NULL,
    prefix TEXT NOT NULL DEFAULT '',
    jail   TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
"""

ACTIVE = "active"
PENDING = "pending"


@dataclass(frozen=True)
class Claim:
    prefix: str
    jail: str
    reason: str
    created: float
    expires: float | None  # None: never (only with no max_bantime cap, which config forbids)


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        # claims per prefix, kept beside the table so hot paths need no scan
        self.owners: dict[str, int] = {}
        for prefix, count in self.db.execute("SELECT prefix, COUNT(*) FROM claims GROUP BY prefix"):
            self.owners[prefix] = count

    def close(self) -> None:
        self.db.close()

    def _tx(self) -> sqlite3.Connection:
        return _Transaction(self.db)  # type: ignore[return-value]

    # claims

    def claims(self, prefix: str | None = None, jail: str | None = None) -> list[Claim]:
        sql, args = "SELECT prefix, jail, reason, created, expires FROM claims", []
        where = []
        if prefix is not None:
            where.append("prefix = ?")
            args.append(prefix)
        if jail is not None:
            where.append("jail = ?")
            args.append(jail)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [Claim(*row) for row in self.db.execute(sql + " ORDER BY created, prefix, jail", args)]

    def wanted(self) -> set[str]:
        return set(self.owners)

    def wanted_among(self, prefixes: list[str]) -> set[str]:
        return {p for p in prefixes if p in self.owners}

    def count_wanted(self) -> int:
        return len(self.owners)

    def _count(self, prefix: str, delta: int) -> None:
        left = self.owners.get(prefix, 0) + delta
        if left > 0:
            self.owners[prefix] = left
        else:
            self.owners.pop(prefix, None)

    def upsert_claim(self, claim: Claim) -> bool:
        """Record a claim; a repeat claim keeps its creation time and the later expiry. True if new."""
        with self._tx():
            old = self.db.execute(
                "SELECT expires FROM claims WHERE prefix = ? AND jail = ?", (claim.prefix, claim.jail)
            ).fetchone()
            if old is None:
                self.db.execute(
                    "INSERT INTO claims VALUES (?, ?, ?, ?, ?)",
                    (claim.prefix, claim.jail, claim.reason, claim.created, claim.expires),
                )
                self._event("ban", claim.prefix, claim.jail, f"expires={_ts(claim.expires)}")
                self._count(claim.prefix, +1)
                return True
            expires = None if old[0] is None or claim.expires is None else max(old[0], claim.expires)
            self.db.execute(
                "UPDATE claims SET expires = ?, reason = CASE WHEN ? = '' THEN reason ELSE ? END "
                "WHERE prefix = ? AND jail = ?",
                (expires, claim.reason, claim.reason, claim.prefix, claim.jail),
            )
            self._event("extend", claim.prefix, claim.jail, f"expires={_ts(expires)}")
            return False

    def remove_claim(self, prefix: str, jail: str, event: str = "unban") -> bool:
        with self._tx():
            gone = self.db.execute("DELETE FROM claims WHERE prefix = ? AND jail = ?", (prefix, jail)).rowcount
            if gone:
                self._event(event, prefix, jail)
                self._count(prefix, -1)
            return bool(gone)

    def remove_prefix(self, prefix: str, event: str = "withdraw") -> list[str]:
        with self._tx():
            jails = [r[0] for r in self.db.execute("SELECT jail FROM claims WHERE prefix = ? ORDER BY jail", (prefix,))]
            self.db.execute("DELETE FROM claims WHERE prefix = ?", (prefix,))
            for jail in jails:
                self._event(event, prefix, jail)
            self.owners.pop(prefix, None)
            return jails

    def remove_jail(self, jail: str | None) -> list[Claim]:
        """Remove every claim of one jail (or all claims); returns what was removed."""
        removed = self.claims(jail=jail)
        with self._tx():
            for claim in removed:
                self.db.execute("DELETE FROM claims WHERE prefix = ? AND jail = ?", (claim.prefix, claim.jail))
                self._event("flush", claim.prefix, claim.jail)
                self._count(claim.prefix, -1)
        return removed

    def expire(self, now: float) -> list[Claim]:
        rows = self.db.execute(
            "SELECT prefix, jail, reason, created, expires FROM claims WHERE expires IS NOT NULL AND expires <= ?",
            (now,),
        ).fetchall()
        with self._tx():
            for row in rows:
                self.db.execute("DELETE FROM claims WHERE prefix = ? AND jail = ?", (row[0], row[1]))
                self._event("expire", row[0], row[1])
                self._count(row[0], -1)
        return [Claim(*row) for row in rows]

    def next_expiry(self) -> float | None:
        return self.db.execute("SELECT MIN(expires) FROM claims").fetchone()[0]

    # per-backend route state

    def set_states(self, prefixes: list[str], backend: str, state: str, error: str = "") -> None:
        now = time.time()
        with self._tx():
            self.db.executemany(
                "INSERT INTO routes VALUES (?, ?, ?, ?, ?) ON CONFLICT (prefix, backend) "
                "DO UPDATE SET state = excluded.state, error = excluded.error, updated = excluded.updated",
                [(p, backend, state, error, now) for p in prefixes],
            )

    def drop_states(self, prefixes: list[str]) -> None:
        with self._tx():
            self.db.executemany("DELETE FROM routes WHERE prefix = ?", [(p,) for p in prefixes])

    def states_of(self, prefix: str) -> dict[str, tuple[str, str]]:
        rows = self.db.execute("SELECT backend, state, error FROM routes WHERE prefix = ?", (prefix,))
        return {backend: (state, error) for backend, state, error in rows}

    def states(self) -> dict[str, dict[str, tuple[str, str]]]:
        """prefix -> backend -> (state, error)."""
        found: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        for prefix, backend, state, error in self.db.execute("SELECT prefix, backend, state, error FROM routes"):
            found[prefix][backend] = (state, error)
        return found

    # events

    def event(self, event: str, prefix: str = "", jail: str = "", detail: str = "") -> None:
        with self._tx():
            self._event(event, prefix, jail, detail)

    def _event(self, event: str, prefix: str = "", jail: str = "", detail: str = "") -> None:
        self.db.execute(
            "INSERT INTO events (ts, event, prefix, jail, detail) VALUES (?, ?, ?, ?, ?)",
            (time.time(), event, prefix, jail, detail),
        )

    def events(self, limit: int = 100) -> list[tuple[float, str, str, str, str]]:
        rows = self.db.execute(
            "SELECT ts, event, prefix, jail, detail FROM events ORDER BY id DESC LIMIT ?", (limit,)
        ).fetchall()
        return list(reversed(rows))

    def query_events(self, since: float | None = None, prefix: str | None = None, jail: str | None = None,
                     limit: int = 100) -> list[tuple[float, str, str, str, str]]:
        """The newest `limit` events with ts >= since, of this prefix and jail (each filter optional), oldest first."""
        where, args = [], []
        for clause, value in (("ts >= ?", since), ("prefix = ?", prefix), ("jail = ?", jail)):
            if value is not None:
                where.append(clause)
                args.append(value)
        sql = "SELECT ts, event, prefix, jail, detail FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.db.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
        return list(reversed(rows))


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; nested uses join the outer transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outer = not db.in_transaction

    def __enter__(self) -> None:
        if self.outer:
            self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        if self.outer:
            self.db.execute("ROLLBACK" if kind else "COMMIT")


def _ts(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"
