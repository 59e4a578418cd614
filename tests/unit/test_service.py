"""Service logic against an in-memory backend (the live tests prove it with real daemons)."""

import asyncio
import dataclasses
import logging
from collections import deque
from pathlib import Path

import pytest

from f2b_bgp.config import parse_config
from f2b_bgp.errors import LimitError, RefusedError, StoreError
from f2b_bgp.model import BackendState, BanResult, Drift, Prefix, RouteCounts, RouteState
from f2b_bgp.service import BanRequest

from .memory import make

A, B = "203.0.113.7/32", "203.0.113.8/32"
PA, PB = Prefix.parse(A), Prefix.parse(B)


def run(coro):  # one event loop per call keeps the tests independent
    return asyncio.run(coro)


def test_ban_is_active_once_the_backend_has_it(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path)
    result = run(service.ban(BanRequest("203.0.113.7", jail="sshd")))
    assert result == BanResult(PA, RouteState.ACTIVE, clock.now + 600, clock.now + 600, True)
    assert backend.routes == {A}


def test_repeat_ban_extends_and_permanent_is_capped(tmp_path: Path) -> None:
    service, _, clock = make(tmp_path)
    run(service.ban(BanRequest(A, jail="sshd", bantime=60)))
    again = run(service.ban(BanRequest(A, jail="sshd", bantime=-1)))
    assert again.new is False and again.expires == clock.now + 3600


def test_restored_ban_keeps_its_original_expiry(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path)
    kept = run(service.ban(BanRequest(A, jail="sshd", bantime=600, started=clock.now - 500)))
    assert kept.expires == clock.now + 100
    gone = run(service.ban(BanRequest(B, jail="sshd", bantime=600, started=clock.now - 700)))
    assert gone.state is RouteState.EXPIRED and B not in backend.routes


def test_route_stays_while_any_owner_claims_it(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path)
    run(service.ban(BanRequest(A, jail="sshd")))
    run(service.ban(BanRequest(A, jail="nginx")))
    assert run(service.ban(BanRequest(A, jail="sshd", bantime=60))).route_expires == clock.now + 600
    assert run(service.unban(A, "sshd")).remaining == ("nginx",)
    assert backend.routes == {A}
    assert run(service.unban(A, "sshd")).removed is False
    assert run(service.withdraw(A)).removed == ("nginx",)
    assert backend.routes == set()


def test_refusal_touches_nothing_in_place(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    run(service.ban(BanRequest(A)))
    for hostile in ("198.51.100.7", "203.0.113.0/24", "10.1", "$(reboot)", "", "203.0.113.7\n203.0.113.8"):
        with pytest.raises(RefusedError):
            run(service.ban(BanRequest(hostile)))
    assert backend.routes == {A}


def test_max_routes_refuses_new_prefixes_only(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, max_routes=2)
    run(service.ban(BanRequest(A)))
    run(service.ban(BanRequest(B)))
    with pytest.raises(LimitError, match="max-routes"):
        run(service.ban(BanRequest("203.0.113.9")))
    assert run(service.ban(BanRequest(A, jail="other"))).state is RouteState.ACTIVE  # a new owner, not a new route
    assert backend.routes == {A, B}


def test_max_rate_refuses_a_storm_then_recovers(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, max_rate=2)
    run(service.ban(BanRequest(A)))
    run(service.ban(BanRequest(B)))
    with pytest.raises(LimitError, match="max-rate"):
        run(service.ban(BanRequest("203.0.113.9")))
    assert backend.routes == {A, B}
    clock.now += 61
    run(service.ban(BanRequest("203.0.113.9")))
    assert backend.routes == {A, B, "203.0.113.9/32"}


def test_unacknowledged_ban_stays_pending_and_is_retried(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    backend.available = False
    assert run(service.ban(BanRequest(A))).state is RouteState.PENDING
    assert service.status().routes == RouteCounts(active=0, pending=1)
    backend.available = True
    run(service._retry_pending())
    assert backend.routes == {A} and service.status().routes == RouteCounts(active=1, pending=0)


def test_retry_leaves_a_ban_in_flight_to_its_own_request(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)

    async def scenario() -> None:
        backend.gate = asyncio.Event()
        ban = asyncio.create_task(service.ban(BanRequest(A)))
        while not backend.announced:  # the ban is stored and waits for its ack
            await asyncio.sleep(0)
        # it looks pending in the store, but its request owns it: no second announce, no wait for its lock
        await asyncio.wait_for(service._retry_pending(), 5)
        backend.gate.set()
        assert (await ban).state is RouteState.ACTIVE

    run(scenario())
    assert backend.announced == [A]


def test_expiry_withdraws_without_an_unban(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path)

    async def scenario() -> None:
        await service.ban(BanRequest(A, bantime=30))
        await service.ban(BanRequest(B, bantime=90))
        worker = asyncio.create_task(service.run_expiry())
        clock.now += 31
        service.wake.set()
        for _ in range(200):
            if backend.routes == {B}:
                break
            await asyncio.sleep(0.01)
        worker.cancel()

    run(scenario())
    assert backend.routes == {B}


def test_reconcile_repairs_drift_and_enforces_new_guards(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    run(service.ban(BanRequest(A)))
    run(service.ban(BanRequest(B)))
    backend.routes = {B, "203.0.113.99/32"}  # A lost, a stranger of ours left behind
    report = run(service.reconcile("test"))
    assert report.backends["memory"] == Drift(checked=True, missing=1, stale=1, repaired=True)
    assert backend.routes == {A, B}
    assert run(service.reconcile("again")).backends["memory"] == Drift(checked=True)
    stricter = parse_config({"guards": {"protected": ["203.0.113.8/32"], "allow_special": ["203.0.113.0/24"]}})
    service.config = dataclasses.replace(service.config, guards=stricter.guards)
    assert run(service.reconcile("config")).guard_withdrawn == (PB,)
    assert backend.routes == {A}


def test_a_new_store_keeps_the_routes_it_cannot_account_for(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, fresh=True)
    backend.routes = {"203.0.113.99/32"}  # ours, from before the store was emptied
    assert run(service.reconcile("start")).backends["memory"] == Drift(checked=True)
    assert backend.routes == {"203.0.113.99/32"}
    assert service.status().backends["memory"].unaccounted == 1
    run(service.ban(BanRequest(A)))
    run(service.withdraw(A))
    backend.routes.add("203.0.113.98/32")  # a stray that appears later is ours to repair
    assert run(service.reconcile("periodic")).backends["memory"].stale == 1
    assert backend.routes == {"203.0.113.99/32"}


def test_a_store_that_cannot_write_refuses_the_ban_and_changes_nothing(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    run(service.ban(BanRequest(A)))
    service.store.db.execute("CREATE TRIGGER full BEFORE INSERT ON claims BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    with pytest.raises(StoreError, match="store unavailable: disk full"):
        run(service.ban(BanRequest(B)))
    assert backend.routes == {A} and service.store.count_wanted() == 1
    assert service.status().routes == RouteCounts(active=1, pending=0)
    assert service.status().store.writable is False
    run(service._retry_pending())
    assert backend.routes == {A}  # no ghost route for the ban that was refused


def test_a_batch_answers_each_ban_as_alone_and_pushes_once(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, max_routes=3)
    batch = [BanRequest(A, jail="sshd"), BanRequest("198.51.100.7"), BanRequest(A, jail="nginx"),
             BanRequest(B, bantime=60), BanRequest("203.0.113.9"), BanRequest("203.0.113.10"),
             BanRequest("203.0.113.11", started=clock.now - 700)]
    outcomes = run(service.ban_many(batch))
    assert [type(o).__name__ for o in outcomes] == ["BanResult", "RefusedError", "BanResult", "BanResult",
                                                      "BanResult", "LimitError", "BanResult"]
    assert outcomes[0].new and outcomes[2].new and outcomes[2].route_expires == clock.now + 600
    assert outcomes[3] == BanResult(PB, RouteState.ACTIVE, clock.now + 60, clock.now + 60, True)
    assert outcomes[6].state is RouteState.EXPIRED
    assert backend.announced == [A, B, "203.0.113.9/32"]  # one push, each route once, in order
    assert backend.routes == {A, B, "203.0.113.9/32"}
    assert service.store.count_wanted() == 3


def test_a_ban_repeated_in_one_batch_extends_the_claim_made_just_before(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path)
    first, again = run(service.ban_many([BanRequest(A, jail="sshd", bantime=60), BanRequest(A, jail="sshd")]))
    assert (first.new, again.new, again.expires) == (True, False, clock.now + 600)
    assert [c.expires for c in service.store.claims()] == [clock.now + 600] and backend.announced == [A]
    assert [e.event for e in service.events(None, None, "sshd", 10).events] == ["ban", "extend"]


def test_a_batch_the_store_refuses_changes_nothing(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    service.store.db.execute("CREATE TRIGGER full BEFORE INSERT ON claims BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END")
    outcomes = run(service.ban_many([BanRequest(A), BanRequest("$(reboot)"), BanRequest(B)]))
    assert [type(o) for o in outcomes] == [StoreError, RefusedError, StoreError]
    assert backend.announced == [] and service.store.count_wanted() == 0 and service.recent == deque()


def test_a_large_batch_logs_one_line_and_the_events_keep_each_ban(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    service, _, _ = make(tmp_path)
    addresses = [f"203.0.113.{i}" for i in range(1, 18)]
    with caplog.at_level(logging.INFO, logger="f2b_bgp.service"):
        run(service.ban_many([BanRequest(a, jail="sshd") for a in addresses]))
        run(service.ban_many([BanRequest("203.0.113.99", jail="sshd")]))
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["ban-batch bans=17 new=17 jails=sshd first=203.0.113.1/32 last=203.0.113.17/32 "
                     "result_active=17", f"ban prefix=203.0.113.99/32 jail=sshd expires={1_000_600} new=True "
                     "result=active"]
    assert len(service.events(None, None, "sshd", 100).events) == 18


def test_backend_reset_replays_the_active_set(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    run(service.ban(BanRequest(A)))
    backend.routes = set()  # e.g. ExaBGP restarted
    run(backend.on_reset())
    assert backend.routes == {A}


def test_a_prefix_the_backend_refuses_stays_pending_with_its_error(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path)
    backend.failing = {B}
    run(service.ban(BanRequest(A)))
    assert run(service.ban(BanRequest(B))).state is RouteState.PENDING
    listed = {b.prefix: b for b in service.listing().bans}
    assert listed[PA].state is RouteState.ACTIVE
    assert listed[PB].backends["memory"] == BackendState(RouteState.PENDING, "refused by test")


def test_list_by_jail_shows_only_that_jails_claims(tmp_path: Path) -> None:
    service, _, _ = make(tmp_path)
    run(service.ban(BanRequest(A, jail="j3")))
    run(service.ban(BanRequest(A, jail="j4")))
    run(service.ban(BanRequest(B, jail="j3")))
    (view,) = service.listing("j4").bans
    assert view.prefix == PA and [o.jail for o in view.owners] == ["j4"]


def test_list_pages_cover_every_prefix_once_with_all_its_owners(tmp_path: Path) -> None:
    service, _, _ = make(tmp_path, max_rate=100)
    addresses = [f"203.0.113.{i}" for i in (5, 50, 6, 60, 7)]
    for address in addresses:
        run(service.ban(BanRequest(address, jail="sshd")))
    run(service.ban(BanRequest("203.0.113.50", jail="nginx")))
    seen, after, pages = [], "", 0
    while True:
        page = service.listing(after=after, limit=2)
        seen += page.bans
        pages += 1
        if page.next is None:
            break
        after = page.next
    assert pages == 3 and sorted(str(b.prefix) for b in seen) == sorted(f"{a}/32" for a in addresses)
    assert {o.jail for b in seen if str(b.prefix) == "203.0.113.50/32" for o in b.owners} == {"sshd", "nginx"}
    assert [str(b.prefix) for b in service.listing(jail="nginx").bans] == ["203.0.113.50/32"]
