"""Widened and escalated bans through the service, against the in-memory backend (tests/live proves them
with real firewalls); the decisions themselves are the table of tests/unit/test_aggregation.py."""

import asyncio
import dataclasses
from pathlib import Path

import pytest
from netaddr import IPNetwork

from f2b_bgp.config import parse_config
from f2b_bgp.errors import RequestError
from f2b_bgp.guards import HostFacts
from f2b_bgp.model import Prefix, RouteState
from f2b_bgp.service import BanRequest

from .memory import make

GUARDS = {"protected": ["198.51.100.0/24", "2001:db8:1::/48"], "allow_special": ["203.0.113.0/24", "2001:db8::/32"],
          "min_length_ipv4": 24, "min_length_ipv6": 48}
WIDEN = {"ipv6_ban_length": 64, "jails": {"exact": {"ipv6_ban_length": 128}}}
ESCALATE = {**WIDEN, "escalation": {"enabled": True, "threshold": 3, "window": 600, "bantime": 1200}}
WIDE = "2001:db8:7::/64"


def run(coro):
    return asyncio.run(coro)


def events(service) -> list[tuple[str, str, str]]:
    return [(e.event, e.prefix, e.detail) for e in service.store.query_events(limit=500)]


def test_two_addresses_of_one_64_are_two_claims_on_one_route(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, aggregation=WIDEN, **GUARDS)
    first = run(service.ban(BanRequest("2001:db8:7::5", jail="sshd")))
    assert (str(first.prefix), first.address, first.new, first.state) == (WIDE, "2001:db8:7::5", True, RouteState.ACTIVE)
    second = run(service.ban(BanRequest("2001:db8:7::6", jail="sshd")))
    assert (str(second.prefix), second.new) == (WIDE, True)
    assert backend.routes == {WIDE}
    (view,) = service.listing().bans
    assert [(o.jail, o.address, o.origin) for o in view.owners] == [
        ("sshd", "2001:db8:7::5", "widened"), ("sshd", "2001:db8:7::6", "widened")]
    assert service.status().routes.active == 1  # one route counted, not two


def test_unban_of_an_address_removes_its_claim_on_the_covering_prefix(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=WIDEN, **GUARDS)
    run(service.ban(BanRequest("2001:db8:7::5", jail="sshd")))
    run(service.ban(BanRequest("2001:db8:7::6", jail="sshd")))
    first = run(service.unban("2001:db8:7::5", "sshd"))
    assert (str(first.prefix), first.removed, first.remaining, first.withdrawn) == (
        WIDE, True, ("sshd for 2001:db8:7::6",), False)
    assert backend.routes == {WIDE}
    assert run(service.unban("2001:db8:7::5", "sshd")).removed is False  # already so
    assert run(service.unban("2001:db8:7::6", "sshd")).withdrawn is True
    assert backend.routes == set()


def test_a_jail_override_and_a_refused_widening_keep_the_address(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=WIDEN, **GUARDS)
    assert str(run(service.ban(BanRequest("2001:db8:7::5", jail="exact"))).prefix) == "2001:db8:7::5/128"
    service.host = HostFacts((IPNetwork("2001:db8:9::1/128"),))  # this host's address is in the attacker's /64
    result = run(service.ban(BanRequest("2001:db8:9::66", jail="sshd")))
    assert (str(result.prefix), result.address) == ("2001:db8:9::66/128", "")
    assert backend.routes == {"2001:db8:7::5/128", "2001:db8:9::66/128"}
    assert ("widen-refused", "2001:db8:9::/64",
            "2001:db8:9::66 (sshd) stays a host ban: host-address: 2001:db8:9::1 (address of this host)"
            ) in events(service)


def test_show_answers_for_any_address_inside_a_covering_ban(tmp_path: Path) -> None:
    service, _, _ = make(tmp_path, aggregation=WIDEN, **GUARDS)
    run(service.ban(BanRequest("2001:db8:7::5", jail="sshd")))
    shown = service.show("2001:db8:7::abcd")
    assert shown.blackholed is True
    assert [(str(v.prefix), [(o.jail, o.address, o.origin) for o in v.owners]) for v in shown.bans] == [
        (WIDE, [("sshd", "2001:db8:7::5", "widened")])]
    assert service.show("2001:db8:8::5").bans == ()


def test_escalation_blackholes_the_covering_prefix_as_its_own_claim(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    results = []
    for i in (1, 2, 3):
        results.append(run(service.ban(BanRequest(f"203.0.113.{i}", jail="sshd"))))
        clock.now += 100
    assert [r.escalated for r in results] == [None, None, Prefix.parse("203.0.113.0/24")]
    assert backend.routes == {"203.0.113.0/24", "203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32"}
    (view,) = [v for v in service.listing().bans if str(v.prefix) == "203.0.113.0/24"]
    (owner,) = view.owners
    assert (owner.jail, owner.origin, owner.expires) == ("escalation", "escalated", clock.now - 100 + 1200)
    assert owner.reason == "escalated after 3 bans in 10 min: 203.0.113.1 (sshd), 203.0.113.2 (sshd), 203.0.113.3 (sshd)"
    assert ("escalate", "203.0.113.0/24", "3 bans: 203.0.113.1(sshd) 203.0.113.2(sshd) 203.0.113.3(sshd)") in events(service)
    member = service.show("203.0.113.2")
    assert [str(v.prefix) for v in member.bans] == ["203.0.113.2/32", "203.0.113.0/24"]
    clock.now += 100
    assert run(service.ban(BanRequest("203.0.113.4", jail="sshd"))).escalated is None  # already blackholed
    assert [e for e, _, _ in events(service)].count("escalate") == 1
    assert service.store.route_expiry(Prefix.parse("203.0.113.0/24")) == owner.expires


def test_bans_outside_the_window_or_withdrawn_do_not_escalate(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    run(service.ban(BanRequest("203.0.113.1", jail="sshd")))
    clock.now += 601
    run(service.ban(BanRequest("203.0.113.2", jail="sshd")))
    run(service.ban(BanRequest("203.0.113.3", jail="sshd")))
    run(service.withdraw("203.0.113.3"))  # a false positive, lifted by the operator: it no longer counts
    assert run(service.ban(BanRequest("203.0.113.4", jail="sshd"))).escalated is None
    assert "203.0.113.0/24" not in backend.routes


def test_a_refused_escalation_keeps_the_members_and_says_why(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=ESCALATE, **{**GUARDS, "protected": ["203.0.113.128/25"]})
    for i in (1, 2, 3):
        assert run(service.ban(BanRequest(f"203.0.113.{i}", jail="sshd"))).escalated is None
    assert backend.routes == {"203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32"}
    assert ("escalate-refused", "203.0.113.0/24", "protected: 203.0.113.128/25; members stay: "
            "203.0.113.1(sshd) 203.0.113.2(sshd) 203.0.113.3(sshd)") in events(service)


def test_max_routes_counts_the_covering_route(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=ESCALATE, **{**GUARDS, "max_routes": 3})
    for i in (1, 2, 3):
        assert run(service.ban(BanRequest(f"203.0.113.{i}", jail="sshd"))).escalated is None
    assert "203.0.113.0/24" not in backend.routes
    assert any(e == "escalate-refused" and "max-routes" in d for e, _, d in events(service))


def test_ipv6_escalation_counts_widened_routes_not_addresses(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    for i in (1, 2, 3):  # three addresses of one /64: one member route
        assert run(service.ban(BanRequest(f"2001:db8:7::{i}", jail="sshd"))).escalated is None
    run(service.ban(BanRequest("2001:db8:7:1::1", jail="sshd")))
    result = run(service.ban(BanRequest("2001:db8:7:2::1", jail="sshd")))
    assert str(result.escalated) == "2001:db8:7::/48"
    assert backend.routes == {"2001:db8:7::/48", WIDE, "2001:db8:7:1::/64", "2001:db8:7:2::/64"}


def test_members_and_the_covering_ban_expire_on_their_own_clocks(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    for i in (1, 2, 3):
        run(service.ban(BanRequest(f"203.0.113.{i}", jail="sshd", bantime=300)))

    async def expire_at(now: float) -> None:
        clock.now = now
        await service._expire_due()

    start = clock.now
    run(expire_at(start + 301))
    assert backend.routes == {"203.0.113.0/24"}  # members gone, the covering ban stays
    assert service.show("203.0.113.1").blackholed is True
    run(expire_at(start + 1201))
    assert backend.routes == set()


def test_withdraw_of_a_member_keeps_the_covering_ban_and_says_so(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    for i in (1, 2, 3):
        run(service.ban(BanRequest(f"203.0.113.{i}", jail="sshd")))
    member = run(service.withdraw("203.0.113.1"))
    assert member.removed == ("sshd",) and [str(p) for p in member.covered] == ["203.0.113.0/24"]
    cover = run(service.withdraw("203.0.113.0/24"))
    assert cover.removed == ("escalation",) and cover.covered == ()
    assert backend.routes == {"203.0.113.2/32", "203.0.113.3/32"}  # the other members keep their own bans


def test_a_restart_remembers_the_bans_of_the_window(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    run(service.ban(BanRequest("203.0.113.1", jail="sshd")))
    run(service.ban(BanRequest("203.0.113.2", jail="sshd")))
    restarted = type(service)(service.config, service.store, [backend], service.host, clock=clock)
    assert str(run(restarted.ban(BanRequest("203.0.113.3", jail="sshd"))).escalated) == "203.0.113.0/24"


def test_the_escalation_owner_name_is_reserved(tmp_path: Path) -> None:
    service, _, _ = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    with pytest.raises(RequestError, match="reserved"):
        run(service.ban(BanRequest("203.0.113.1", jail="escalation")))


def test_flush_of_the_escalation_owner_removes_only_escalated_bans(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=ESCALATE, **GUARDS)
    for i in (1, 2, 3):
        run(service.ban(BanRequest(f"203.0.113.{i}", jail="sshd")))
    assert run(service.flush("escalation")).prefixes == 1
    assert backend.routes == {"203.0.113.1/32", "203.0.113.2/32", "203.0.113.3/32"}


def test_max_rate_counts_the_covering_route(tmp_path: Path) -> None:
    service, backend, clock = make(tmp_path, aggregation=ESCALATE, **{**GUARDS, "max_rate": 3})
    for i in (1, 2, 3):  # three new routes in a minute: the rate is used up, the escalation would be the fourth
        assert run(service.ban(BanRequest(f"203.0.113.{i}", jail="sshd"))).escalated is None
    assert "203.0.113.0/24" not in backend.routes
    assert any(e == "escalate-refused" and "max-rate" in d for e, _, d in events(service))
    clock.now += 61
    assert str(run(service.ban(BanRequest("203.0.113.4", jail="sshd"))).escalated) == "203.0.113.0/24"


def test_a_widened_prefix_the_guards_now_refuse_is_withdrawn_at_reload(tmp_path: Path) -> None:
    service, backend, _ = make(tmp_path, aggregation=WIDEN, **GUARDS)
    run(service.ban(BanRequest("2001:db8:7::5", jail="sshd")))
    stricter = parse_config({"guards": {**GUARDS, "protected": ["2001:db8:7::100/120"]}, "aggregation": WIDEN})
    service.config = dataclasses.replace(service.config, guards=stricter.guards)
    assert [str(p) for p in run(service.reconcile("reload")).guard_withdrawn] == [WIDE]
    assert backend.routes == set() and service.store.claims() == []
