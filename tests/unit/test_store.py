"""The store: claims per owner, the later expiry wins, and nothing committed is lost to kill -9."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from f2b_bgp.store import ACTIVE, PENDING, Claim, Store

P = "203.0.113.7/32"


def test_repeat_claim_keeps_creation_and_extends_expiry(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.upsert_claim(Claim(P, "sshd", "first", 100.0, 200.0)) is True
    assert store.upsert_claim(Claim(P, "sshd", "", 150.0, 400.0)) is False
    assert store.upsert_claim(Claim(P, "sshd", "", 160.0, 300.0)) is False  # shorter: keeps 400
    assert store.claims() == [Claim(P, "sshd", "first", 100.0, 400.0)]


def test_owners_are_removed_one_by_one(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.upsert_claim(Claim(P, "sshd", "", 1.0, 10.0))
    store.upsert_claim(Claim(P, "nginx", "", 2.0, 20.0))
    assert store.remove_claim(P, "sshd") is True
    assert store.remove_claim(P, "sshd") is False
    assert store.wanted() == {P}
    assert store.remove_prefix(P) == ["nginx"]
    assert store.wanted() == set()


def test_expire_returns_only_due_claims(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.upsert_claim(Claim(P, "sshd", "", 1.0, 10.0))
    store.upsert_claim(Claim("203.0.113.8/32", "sshd", "", 1.0, 30.0))
    assert store.next_expiry() == 10.0
    assert [c.prefix for c in store.expire(10.0)] == [P]
    assert store.wanted() == {"203.0.113.8/32"}
    assert [e[1] for e in store.events()][-1] == "expire"


def test_backend_states(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    store.set_states([P], "kernel", PENDING, "netlink down")
    store.set_states([P], "kernel", ACTIVE)
    store.set_states([P], "exabgp", PENDING, "no bridge")
    assert store.states()[P] == {"kernel": (ACTIVE, ""), "exabgp": (PENDING, "no bridge")}
    store.drop_states([P])
    assert store.states() == {}


WRITER = """
import os, sys
from f2b_bgp.store import Claim, Store
store = Store(__import__("pathlib").Path(sys.argv[1]))
for i in range(200):
    store.upsert_claim(Claim(f"203.0.113.{i}/32", "sshd", "", 1.0, 2.0))
    print(i, flush=True)
os.kill(os.getpid(), 9)
"""


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    proc = subprocess.run([sys.executable, "-c", WRITER, str(db)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    acknowledged = len(proc.stdout.split())
    assert acknowledged == 200
    assert len(Store(db).wanted()) == acknowledged
    assert os.path.exists(str(db) + "-wal")  # the data was recovered from the write-ahead log
