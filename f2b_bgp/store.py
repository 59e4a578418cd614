"""SQLite state: who claims which prefix until when, and an event log.

Only the daemon writes it. WAL with synchronous=NORMAL: every committed
transaction survives a crash of the process (kill -9); a power cut may lose
the last ones. What the daemon keeps in memory (the owners per prefix) changes
only after the transaction that changes the disk has committed, so a failed
write (disk full, read-only file) leaves memory exactly as the disk.
"""

from __future__ import annotations

import logging
import os
import gc
import sqlite3
import time
from collections.abc import KeysView
from pathlib import Path
from typing import Any

from .errors import StoreError
from .logfmt import kv
from .model import Claim, Event, Prefix, StoreHealth

log = logging.getLogger(__name__)

_CLAIMS_TABLE = """
CREATE TABLE {if_new}{name} (
    prefix  TEXT NOT NULL,
    jail    TEXT NOT NULL,
    reason  TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    expires REAL,
    address TEXT NOT NULL DEFAULT '',
    origin  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (prefix, jail, address)
);"""

SCHEMA = _CLAIMS_TABLE.format(if_new="IF NOT EXISTS ", name="claims") + """
CREATE INDEX IF NOT EXISTS claims_expires ON claims (expires);
CREATE INDEX IF NOT EXISTS claims_address ON claims (address) WHERE address != '';
CREATE TABLE IF NOT EXISTS events (
    id     INTEGER PRIMARY KEY,
    ts     REAL NOT NULL,
    event  TEXT NOT NULL,
    prefix TEXT NOT NULL DEFAULT '',
    jail   TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

_CLAIM_COLUMNS = "prefix, jail, reason, created, expires, address, origin"
# Before aggregation a claim was keyed by (prefix, jail): the table is rebuilt with the banned
# address in the key (SQLite cannot change a primary key in place), old rows keep address ''.
_MIGRATE_ADDRESS = _CLAIMS_TABLE.format(if_new="", name="claims_v2") + """
INSERT INTO claims_v2 (prefix, jail, reason, created, expires) SELECT prefix, jail, reason, created, expires FROM claims;
DROP TABLE claims;
ALTER TABLE claims_v2 RENAME TO claims;
"""


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.health = StoreHealth()
        self.opened = False  # until then a failure is the caller's one-line start error, not a log line
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, isolation_level=None)
            tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
            self.db.executescript(SCHEMA)
            self.probe()
            # A store without our tables (a new file, or one truncated to 0 bytes) knows nothing, and
            # stays so until a daemon settled what the backends held: its silence never means "withdraw".
            self.fresh = "claims" not in tables or ("meta" in tables and not self._settled())
            # claims per prefix, kept beside the table so hot paths need no scan
            self.owners = _load_owners(self.db)
            self.opened = True
        except (sqlite3.Error, OSError, ValueError, StoreError) as err:
            cause = _unwritable(path) or _cause(err.__cause__ if isinstance(err, StoreError) and err.__cause__ else err)
            raise StoreError(f"store {path} unusable: {cause}",
                             hint="check the file's owner, mode and free space, or move a damaged file away") from err

    def close(self) -> None:
        self.db.close()

    def _one(self, sql: str, *args: object) -> Any:
        """The single value of a one-row query. fetchall() ends the statement: a statement left
        open keeps a read snapshot, which blocks WAL checkpoints and other connections."""
        return self.db.execute(sql, args).fetchall()[0][0]

    def probe(self) -> None:
        """One small write: proves the store writable (at start, and to heal after a failed write)."""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('opened', ?)", (str(time.time()),))

    def _migrate(self) -> None:
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(claims)")}
        if columns and "address" not in columns:
            with self._tx():
                for statement in _MIGRATE_ADDRESS.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self._event("migrate", detail="claims: added address and origin")

    def _settled(self) -> bool:
        return bool(self.db.execute("SELECT 1 FROM meta WHERE key = 'settled'").fetchall())

    def meta(self, key: str) -> str | None:
        rows = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchall()
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def mark_settled(self) -> None:
        """The backends' routes are accounted for (none found, adopted or discarded)."""
        with self._tx():
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('settled', ?)", (str(time.time()),))
        self.fresh = False

    def _tx(self) -> _Transaction:
        return _Transaction(self)

    def failed(self, err: Exception) -> StoreError:
        """Record a failed write and give the error to raise."""
        cause = _cause(err)
        if self.health.writable:
            self.health = StoreHealth(False, time.time(), cause)
            if self.opened:
                log.error(kv("store-unavailable", path=self.path, error=cause, then="writes refused, reads go on"))
        else:
            self.health = StoreHealth(False, self.health.since, cause)
        return StoreError(f"store unavailable: {cause}", hint=f"nothing was changed; check {self.path}")

    def healed(self) -> None:
        if not self.health.writable:
            log.warning(kv("store-healed", path=self.path, unavailable_for=time.time() - (self.health.since or 0)))
            self.health = StoreHealth()

    # claims

    def claims(self, prefix: Prefix | None = None, jail: str | None = None) -> list[Claim]:
        where, args = [], []
        if prefix is not None:
            where.append("prefix = ?")
            args.append(str(prefix))
        if jail is not None:
            where.append("jail = ?")
            args.append(jail)
        sql = f"SELECT {_CLAIM_COLUMNS} FROM claims" + (" WHERE " + " AND ".join(where) if where else "")
        return [_claim(row) for row in self.db.execute(sql + " ORDER BY created, prefix, jail, address", args)]

    def prefixes_of(self, jail: str) -> set[Prefix]:
        return {Prefix.parse(row[0]) for row in self.db.execute("SELECT DISTINCT prefix FROM claims WHERE jail = ?",
                                                                 (jail,))}

    def page(self, after: str, limit: int, jail: str | None = None) -> list[Claim]:
        """Every claim on the next `limit` prefixes whose text sorts after `after` (of those
        that jail claims, if given): one bounded read, so a listing of a million never blocks."""
        sql, args = "SELECT DISTINCT prefix FROM claims WHERE prefix > ?", [after]
        if jail is not None:
            sql += " AND jail = ?"
            args.append(jail)
        prefixes = [row[0] for row in self.db.execute(sql + " ORDER BY prefix LIMIT ?", (*args, limit))]
        if not prefixes:
            return []
        rows = self.db.execute(f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE prefix >= ? AND prefix <= ? "
                               "ORDER BY prefix, created, jail, address", (prefixes[0], prefixes[-1])).fetchall()
        wanted = set(prefixes)
        return [_claim(row) for row in rows if row[0] in wanted]

    def claims_for_address(self, address: str) -> list[Claim]:
        """The claims made on a wider prefix for this banned address (widened bans)."""
        rows = self.db.execute(f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE address = ? AND address != '' "
                               "ORDER BY created, prefix, jail", (address,)).fetchall()
        return [_claim(row) for row in rows]

    def claims_since(self, since: float) -> list[Claim]:
        """Claims created at or after SINCE (the recent bans, at start)."""
        rows = self.db.execute(f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE created >= ? ORDER BY created",
                               (since,)).fetchall()
        return [_claim(row) for row in rows]

    def covering(self, prefix: Prefix) -> list[Prefix]:
        """Stored prefixes equal to or containing PREFIX, the most specific first: one probe per length."""
        found = []
        for length in range(prefix.length, -1, -1):
            shift = prefix.width - length
            candidate = Prefix(prefix.version, prefix.value >> shift << shift, length)
            if candidate in self.owners:
                found.append(candidate)
        return found

    def wanted(self) -> KeysView[Prefix]:
        return self.owners.keys()

    def is_wanted(self, prefix: Prefix) -> bool:
        return prefix in self.owners

    def owner_count(self, prefix: Prefix) -> int:
        return self.owners.get(prefix, 0)

    def count_wanted(self) -> int:
        return len(self.owners)

    def _count(self, prefix: Prefix, delta: int) -> None:
        left = self.owners.get(prefix, 0) + delta
        if left > 0:
            self.owners[prefix] = left
        else:
            self.owners.pop(prefix, None)

    def upsert_claim(self, claim: Claim) -> bool:
        """Record a claim; a repeat claim keeps its creation time and the later expiry. True if new."""
        return self.upsert_claims([claim])[0]

    def upsert_claims(self, claims: list[Claim]) -> list[bool]:
        """upsert_claim for each, in order, in one transaction (a batch of bans commits once).

        A claim on a prefix nobody claims yet is inserted without asking the
        disk first (the owners in memory are the disk's); those go in runs."""
        fresh: list[bool] = []
        inserts: list[Claim] = []
        keys: set[tuple[Prefix, str, str]] = set()
        with self._tx():
            for claim in claims:
                key = (claim.prefix, claim.jail, claim.address)
                if claim.prefix not in self.owners and key not in keys:
                    keys.add(key)
                    inserts.append(claim)
                    fresh.append(True)
                    continue
                self._insert(inserts)  # first, so the claim below finds a row inserted before it
                inserts = []
                fresh.append(self._upsert(claim))
            self._insert(inserts)
        for claim, new in zip(claims, fresh):
            if new:
                self._count(claim.prefix, +1)
        return fresh

    def _insert(self, claims: list[Claim]) -> None:
        if not claims:
            return
        self.db.executemany(f"INSERT INTO claims ({_CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [(str(c.prefix), c.jail, c.reason, c.created, c.expires, c.address, c.origin)
                             for c in claims])
        self._events([("ban", str(c.prefix), c.jail, f"expires={_ts(c.expires)}{_widened(c)}") for c in claims])

    def _upsert(self, claim: Claim) -> bool:
        key = (str(claim.prefix), claim.jail, claim.address)
        detail = _widened(claim)
        old = self.db.execute("SELECT expires FROM claims WHERE prefix = ? AND jail = ? AND address = ?",
                              key).fetchall()
        if not old:
            self._insert([claim])
            return True
        expires = None if old[0][0] is None or claim.expires is None else max(old[0][0], claim.expires)
        self.db.execute(
            "UPDATE claims SET expires = ?, reason = CASE WHEN ? = '' THEN reason ELSE ? END "
            "WHERE prefix = ? AND jail = ? AND address = ?", (expires, claim.reason, claim.reason, *key))
        self._event("extend", *key[:2], f"expires={_ts(expires)}{detail}")
        return False

    def has_claim(self, prefix: Prefix, jail: str) -> bool:
        return bool(self.db.execute("SELECT 1 FROM claims WHERE prefix = ? AND jail = ?",
                                    (str(prefix), jail)).fetchall())

    def count_owned(self, owner: str) -> int:
        """Claims whose jail is OWNER/... (an API client's), counted by a range on the jail text."""
        return self._one("SELECT COUNT(*) FROM claims WHERE jail >= ? AND jail < ?", owner + "/", owner + "0")

    def count_by_jail(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT jail, COUNT(*) FROM claims GROUP BY jail").fetchall())

    def route_expiry(self, prefix: Prefix) -> float | None:
        """When the route goes: the latest expiry of its owners (None if it has none)."""
        return self._one("SELECT MAX(expires) FROM claims WHERE prefix = ?", str(prefix))

    def remove_claim(self, prefix: Prefix, jail: str, event: str = "unban", address: str = "") -> bool:
        with self._tx():
            gone = self.db.execute("DELETE FROM claims WHERE prefix = ? AND jail = ? AND address = ?",
                                   (str(prefix), jail, address)).rowcount
            if gone:
                self._event(event, str(prefix), jail, f"address={address}" if address else "")
        if gone:
            self._count(prefix, -1)
        return bool(gone)

    def remove_prefix(self, prefix: Prefix, event: str = "withdraw") -> list[Claim]:
        """Remove every claim on PREFIX; the claims removed."""
        text = str(prefix)
        with self._tx():
            removed = [_claim(row) for row in self.db.execute(
                f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE prefix = ? ORDER BY jail, address", (text,)).fetchall()]
            self.db.execute("DELETE FROM claims WHERE prefix = ?", (text,))
            for claim in removed:
                self._event(event, text, claim.jail, f"address={claim.address}" if claim.address else "")
        self.owners.pop(prefix, None)
        return removed

    def remove_claims(self, claims: list[Claim], event: str) -> None:
        """Remove these claims in one transaction (flush, expiry, withdraw of an address)."""
        with self._tx():
            self.db.executemany("DELETE FROM claims WHERE prefix = ? AND jail = ? AND address = ?",
                                [(str(c.prefix), c.jail, c.address) for c in claims])
            self._events([(event, str(c.prefix), c.jail, f"address={c.address}" if c.address else "")
                          for c in claims])
        for claim in claims:
            self._count(claim.prefix, -1)

    def due(self, now: float) -> list[Claim]:
        rows = self.db.execute(f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE expires IS NOT NULL AND expires <= ?",
                               (now,)).fetchall()
        return [_claim(row) for row in rows]

    def next_expiry(self) -> float | None:
        return self._one("SELECT MIN(expires) FROM claims")

    # events

    def prune_events(self, now: float, max_age: float, max_rows: int, batch: int = 5000) -> int:
        """Delete up to `batch` of the oldest events that are past max_age or beyond max_rows;
        the caller repeats while it returns `batch`, yielding between rounds."""
        newest = self._one("SELECT MAX(id) FROM events") or 0
        with self._tx():
            gone = self.db.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE id <= ? OR ts < ? ORDER BY id LIMIT ?)",
                (newest - max_rows, now - max_age, batch)).rowcount
        return gone

    def event(self, event: str, prefix: str = "", jail: str = "", detail: str = "") -> None:
        with self._tx():
            self._event(event, prefix, jail, detail)

    def _event(self, event: str, prefix: str = "", jail: str = "", detail: str = "") -> None:
        self._events([(event, prefix, jail, detail)])

    def _events(self, rows: list[tuple[str, str, str, str]]) -> None:
        """(event, prefix, jail, detail) rows, stamped now."""
        now = time.time()
        self.db.executemany("INSERT INTO events (ts, event, prefix, jail, detail) VALUES (?, ?, ?, ?, ?)",
                            [(now, *row) for row in rows])

    def query_events(self, since: float | None = None, prefix: str | None = None, jail: str | None = None,
                     limit: int = 100) -> list[Event]:
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
        return [Event(*row) for row in reversed(rows)]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; nested uses join the outer one. A failure rolls back and raises StoreError."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.outer = not store.db.in_transaction

    def __enter__(self) -> None:
        if self.outer:
            try:
                self.store.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                raise self.store.failed(err) from err

    def __exit__(self, kind: object, value: object, _tb: object) -> None:
        if not self.outer:
            return
        db = self.store.db
        if kind is None:
            try:
                db.execute("COMMIT")
                self.store.healed()
                return
            except sqlite3.Error as err:
                _rollback(db)
                raise self.store.failed(err) from err
        _rollback(db)
        if isinstance(value, sqlite3.Error):
            raise self.store.failed(value) from value


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is gone with the failed statement


def _load_owners(db: sqlite3.Connection) -> dict[Prefix, int]:
    """Claims per prefix. The collector is paused meanwhile: a million new objects would otherwise
    trigger full collections over an ever larger heap (a third of the start-up time at 1M bans)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return {Prefix.parse(text): count
                for text, count in db.execute("SELECT prefix, COUNT(*) FROM claims GROUP BY prefix")}
    finally:
        if enabled:
            gc.enable()


def _widened(claim: Claim) -> str:
    """The event detail's tail for a claim on a wider prefix than the address banned."""
    return f" {claim.origin}_from={claim.address}" if claim.address else ""


def _claim(row: tuple[str, str, str, float, float | None, str, str]) -> Claim:
    return Claim(Prefix.parse(row[0]), row[1], row[2], row[3], row[4], row[5], row[6])


def _cause(err: Exception) -> str:
    text = str(err) or type(err).__name__
    if "disk is full" in text or getattr(err, "sqlite_errorname", "") == "SQLITE_FULL":
        return "disk full"
    if "readonly" in text or "read-only" in text:
        return "read-only (file mode, owner or mount)"
    return text.splitlines()[0][:160] if text else type(err).__name__


def _unwritable(path: Path) -> str | None:
    """Why the store's directory or file cannot be written, in the operator's words (SQLite often
    says only "unable to open database file"), or None if nothing obvious is wrong."""
    try:
        fs = os.statvfs(path.parent)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return f"read-only file system ({path.parent} is mounted read-only)"
    if fs.f_bavail == 0:
        return "disk full"
    for target in (path.parent, path):
        if target.exists() and not os.access(target, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
            return f"read-only: {target} is not writable by uid {os.geteuid()} (owner or mode)"
    return None


def _ts(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"
