"""The store: claims per owner, the later expiry wins, nothing committed is lost to kill -9,
and a failed write leaves memory exactly as the disk."""

import os
import sqlite3
import signal
import subprocess
import time
import sys
from pathlib import Path

import pytest

from f2b_bgp.errors import StoreError
from f2b_bgp.model import Claim, Prefix
from f2b_bgp.store import Store

P = Prefix.parse("203.0.113.7/32")
Q = Prefix.parse("203.0.113.8/32")


def test_repeat_claim_keeps_creation_and_extends_expiry(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.upsert_claim(Claim(P, "sshd", "first", 100.0, 200.0)) is True
    assert store.upsert_claim(Claim(P, "sshd", "", 150.0, 400.0)) is False
    assert store.upsert_claim(Claim(P, "sshd", "", 160.0, 300.0)) is False  # shorter: keeps 400
    assert store.claims() == [Claim(P, "sshd", "first", 100.0, 400.0)]


def test_owners_are_removed_one_by_one_and_the_route_expiry_is_the_latest(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.upsert_claim(Claim(P, "sshd", "", 1.0, 10.0))
    store.upsert_claim(Claim(P, "nginx", "", 2.0, 20.0))
    assert store.route_expiry(P) == 20.0
    assert store.remove_claim(P, "sshd") is True
    assert store.remove_claim(P, "sshd") is False
    assert set(store.wanted()) == {P}
    assert [c.jail for c in store.remove_prefix(P)] == ["nginx"]
    assert set(store.wanted()) == set()


def test_due_claims_and_their_removal(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.upsert_claim(Claim(P, "sshd", "", 1.0, 10.0))
    store.upsert_claim(Claim(Q, "sshd", "", 1.0, 30.0))
    assert store.next_expiry() == 10.0
    due = store.due(10.0)
    assert [c.prefix for c in due] == [P]
    store.remove_claims(due, "expire")
    assert set(store.wanted()) == {Q}
    assert store.query_events()[-1].event == "expire"


def fresh(db: Path) -> bool:
    store = Store(db)
    store.close()
    return store.fresh


def test_a_new_or_emptied_file_is_fresh_and_a_used_one_is_not(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    assert fresh(db) is True
    assert fresh(db) is True  # a daemon that refused to start settled nothing
    store = Store(db)
    store.mark_settled()
    store.close()
    assert fresh(db) is False  # settled: an empty ban list is now the truth
    store = Store(db)
    store.upsert_claim(Claim(P, "sshd", "", 1.0, 10.0))
    store.close()
    db.write_bytes(b"")  # truncated to 0 bytes
    assert fresh(db) is True


def test_a_garbage_file_refuses_to_open_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "garbage.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError) as caught:
        Store(tmp_path / "garbage.db")
    assert "\n" not in caught.value.message and "garbage.db" in caught.value.message


def test_a_failed_write_leaves_memory_as_the_disk_and_heals(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.upsert_claim(Claim(P, "sshd", "", 1.0, 10.0))
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON claims BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END")
    with pytest.raises(StoreError) as caught:
        store.upsert_claim(Claim(Q, "sshd", "", 1.0, 10.0))
    assert caught.value.message.startswith("store unavailable: ")
    assert set(store.wanted()) == {P} and store.claims(prefix=Q) == []
    assert store.health.writable is False and store.health.since is not None
    store.db.execute("DROP TRIGGER refuse")
    assert store.upsert_claim(Claim(Q, "sshd", "", 1.0, 10.0)) is True
    assert store.health.writable is True and set(store.wanted()) == {P, Q}


WRITER = """
import os, sys
from f2b_bgp.model import Claim, Prefix
from f2b_bgp.store import Store
store = Store(__import__("pathlib").Path(sys.argv[1]))
for i in range(200):
    store.upsert_claim(Claim(Prefix.parse(f"203.0.113.{i}/32"), "sshd", "", 1.0, 2.0))
    print(i, flush=True)
os.kill(os.getpid(), 9)
"""


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    acknowledged = len(proc.stdout.split())
    assert acknowledged == 200
    assert Store(db).count_wanted() == acknowledged
    assert os.path.exists(str(db) + "-wal")  # the data was recovered from the write-ahead log


def test_events_are_pruned_by_age_and_by_count_oldest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    for i in range(30):
        store.event("ban", f"203.0.113.{i}/32")
    store.db.execute("UPDATE events SET ts = 1000 WHERE id <= 5")  # five old ones
    assert store.prune_events(now=time.time(), max_age=3600, max_rows=100) == 5
    assert store.prune_events(now=time.time(), max_age=3600, max_rows=20, batch=3) == 3
    assert store.prune_events(now=time.time(), max_age=3600, max_rows=20, batch=3) == 2
    assert store.prune_events(now=time.time(), max_age=3600, max_rows=20) == 0
    assert [e.prefix for e in store.query_events(limit=100)][0] == "203.0.113.10/32"


OLD_SCHEMA = """
CREATE TABLE claims (prefix TEXT NOT NULL, jail TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
                     created REAL NOT NULL, expires REAL, PRIMARY KEY (prefix, jail));
CREATE TABLE events (id INTEGER PRIMARY KEY, ts REAL NOT NULL, event TEXT NOT NULL, prefix TEXT NOT NULL DEFAULT '',
                     jail TEXT NOT NULL DEFAULT '', detail TEXT NOT NULL DEFAULT '');
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO claims VALUES ('203.0.113.7/32', 'sshd', 'old', 1.0, 10.0);
INSERT INTO meta VALUES ('settled', '1');
"""


def test_a_store_of_the_previous_schema_is_migrated_keeping_its_claims(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as old:
        old.executescript(OLD_SCHEMA)
    old.close()
    store = Store(db)
    assert store.fresh is False and store.claims() == [Claim(P, "sshd", "old", 1.0, 10.0)]
    assert any(e.event == "migrate" for e in store.query_events())
    wide = Prefix.parse("2001:db8:7::/64")
    # the banned address is part of the key now: two addresses of one /64 are two claims of one jail
    assert store.upsert_claim(Claim(wide, "sshd", "", 2.0, 20.0, "2001:db8:7::5", "widened")) is True
    assert store.upsert_claim(Claim(wide, "sshd", "", 3.0, 30.0, "2001:db8:7::6", "widened")) is True
    assert store.owners[wide] == 2
    assert [c.prefix for c in store.claims_for_address("2001:db8:7::5")] == [wide]
    store.close()
    again = Store(db)  # opening a migrated store changes nothing
    assert len(again.claims()) == 3 and [e.event for e in again.query_events()].count("migrate") == 1


def test_covering_finds_every_stored_prefix_containing_an_address(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    for text in ("203.0.113.0/24", "203.0.113.7/32", "203.0.0.0/16", "198.51.100.0/24", "2001:db8::/32"):
        store.upsert_claim(Claim(Prefix.parse(text), "sshd", "", 1.0, 10.0))
    assert [str(p) for p in store.covering(P)] == ["203.0.113.7/32", "203.0.113.0/24", "203.0.0.0/16"]
    assert [str(p) for p in store.covering(Q)] == ["203.0.113.0/24", "203.0.0.0/16"]
    assert [str(p) for p in store.covering(Prefix.parse("2001:db8:7::5"))] == ["2001:db8::/32"]
    assert store.covering(Prefix.parse("192.0.2.1")) == []
