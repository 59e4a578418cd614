"""The HTTPS API over real TLS on loopback: the Unix socket's answers, tokens, scopes, audit, status codes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import ssl
from pathlib import Path

import pytest

from f2b_bgp import model
from f2b_bgp.config import ApiConfig, parse_config
from f2b_bgp.errors import ExitCode, LimitError, RefusedError, UnavailableError
from f2b_bgp.https_api import HTTP_STATUS
from f2b_bgp.model import Prefix

from .central import SECRETS, Pki, call, central_service, raw, serving, tokens

DOC = (Path(__file__).parents[2] / "docs" / "contracts.md").read_text()
ATTACKER = "203.0.113.7"


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 60))


def test_a_ban_is_recorded_under_the_token_name_with_the_unix_socket_fields(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> tuple[dict, dict, dict]:
        async with serving(service) as url:
            ctx = pki.context()
            ban = await call(url, SECRETS["web1"], ctx, "ban", prefix=ATTACKER, jail="sshd", bantime=600,
                             started=service.clock() - 100, reason="ssh")
            listing = await call(url, SECRETS["web1"], ctx, "list")
            status = await raw(url, "GET", "/v1/show?prefix=" + ATTACKER, ctx,
                               {"Authorization": "Bearer " + SECRETS["web1"]})
            return ban, listing, status

    ban, listing, (code, show, _) = run(scenario())
    assert code == 200 and show["ok"] and show["blackholed"]
    assert list(ban) == ["ok"] + [f.name for f in dataclasses.fields(model.BanResult)]
    assert ban["state"] == "active" and ban["expires"] == service.clock() - 100 + 600
    [claim] = service.store.claims()
    assert (claim.jail, claim.reason, claim.expires) == ("web1/sshd", "ssh", service.clock() + 500)
    assert [o["jail"] for b in listing["bans"] for o in b["owners"]] == ["web1/sshd"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer f2b_never-issued"},
                                     {"Authorization": "Basic " + SECRETS["web1"]}, {"Authorization": "Bearer"}])
def test_no_valid_token_is_401_and_changes_nothing(tmp_path: Path, pki: Pki, headers: dict) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> tuple[int, dict, dict]:
        async with serving(service) as url:
            return await raw(url, "POST", "/v1/ban", pki.context(), headers, json.dumps({"prefix": ATTACKER}).encode())

    status, body, answer_headers = run(scenario())
    assert status == 401 and body["code"] == "refused" and "token" in body["error"]
    assert answer_headers["WWW-Authenticate"].startswith("Bearer")
    assert service.store.count_wanted() == 0


def test_a_token_removed_from_the_config_is_refused_from_the_next_request(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> None:
        async with serving(service) as url:
            await call(url, SECRETS["web1"], pki.context(), "ban", prefix=ATTACKER, jail="sshd")
            # what daemon.reload does with a config that no longer lists web1
            service.config = dataclasses.replace(
                service.config, api=dataclasses.replace(service.config.api, tokens=tokens()[1:]))
            with pytest.raises(RefusedError, match="no valid token"):
                await call(url, SECRETS["web1"], pki.context(), "unban", prefix=ATTACKER, jail="sshd")

    run(scenario())
    assert [c.jail for c in service.store.claims()] == ["web1/sshd"]


@pytest.mark.parametrize("who, op, fields, status, words", [
    ("web2", "unban", {"prefix": ATTACKER, "jail": "web1/sshd"}, 403, "only on its own claims"),
    ("web2", "ban", {"prefix": ATTACKER, "jail": "web1/sshd"}, 403, "only on its own claims"),
    ("web1", "flush", {}, 403, "may not call 'flush'"),
    ("web1", "ban", {"prefix": "198.51.100.9"}, 403, "protected"),
    ("web1", "ban", {"prefix": "203.0.113.200"}, 403, "may not touch 203.0.113.192/26"),
    ("web1", "ban", {"prefix": "203.0.113.8", "jail": "x" * 60}, 400, "'jail' must be"),
    ("web1", "ban", {"prefix": "203.0.113.8; reboot"}, 403, "input"),
])
def test_out_of_scope_requests_are_refused_and_change_nothing(tmp_path: Path, pki: Pki, who: str, op: str,
                                                              fields: dict, status: int, words: str) -> None:
    service = central_service(tmp_path, pki, web1={"forbidden": ("203.0.113.192/26",)})

    async def scenario() -> tuple[int, dict, dict]:
        async with serving(service) as url:
            await call(url, SECRETS["web1"], pki.context(), "ban", prefix=ATTACKER, jail="sshd")
            return await raw(url, "POST", f"/v1/{op}", pki.context(), {"Authorization": "Bearer " + SECRETS[who]},
                             json.dumps(fields).encode())

    got, body, _ = run(scenario())
    assert (got, body["ok"]) == (status, False) and words in body["error"], body
    assert [(str(c.prefix), c.jail) for c in service.store.claims()] == [(ATTACKER + "/32", "web1/sshd")]


def test_quota_and_rate_of_a_token(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki, web1={"max_claims": 2}, web2={"max_rate": 1})

    async def scenario() -> None:
        async with serving(service) as url:
            ctx = pki.context()
            for address in ("203.0.113.1", "203.0.113.2"):
                await call(url, SECRETS["web1"], ctx, "ban", prefix=address)
            with pytest.raises(LimitError, match="quota of 2 active claims"):
                await call(url, SECRETS["web1"], ctx, "ban", prefix="203.0.113.3")
            await call(url, SECRETS["web1"], ctx, "ban", prefix="203.0.113.2", bantime=900)  # a repeat is no new claim
            await call(url, SECRETS["web2"], ctx, "ban", prefix="203.0.113.4")
            with pytest.raises(LimitError, match="1 new claims in the last minute"):
                await call(url, SECRETS["web2"], ctx, "ban", prefix="203.0.113.5")

    run(scenario())
    assert sorted(c.jail + " " + str(c.prefix) for c in service.store.claims()) == [
        "web1/cli 203.0.113.1/32", "web1/cli 203.0.113.2/32", "web2/cli 203.0.113.4/32"]
    assert service.stats.events[("api-error", "limit")] == 2


def test_two_owners_and_an_edge_withdraw_removes_only_its_own(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> tuple[dict, dict, dict]:
        async with serving(service) as url:
            ctx = pki.context()
            await call(url, SECRETS["web1"], ctx, "ban", prefix=ATTACKER, jail="sshd")
            await call(url, SECRETS["web2"], ctx, "ban", prefix=ATTACKER, jail="nginx")
            web2_sees = await call(url, SECRETS["web2"], ctx, "list")
            withdrawn = await call(url, SECRETS["web1"], ctx, "withdraw", prefix=ATTACKER)
            return web2_sees, withdrawn, await call(url, SECRETS["ops"], ctx, "list")

    web2_sees, withdrawn, after = run(scenario())
    assert [o["jail"] for o in web2_sees["bans"][0]["owners"]] == ["web2/nginx"]
    assert withdrawn["removed"] == ["web1/sshd"]
    assert [o["jail"] for o in after["bans"][0]["owners"]] == ["web2/nginx"]
    assert service.store.is_wanted(Prefix.parse(ATTACKER))


@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "/v1/ban", None, 405), ("POST", "/v1/list", b"{}", 405), ("GET", "/v1/reboot", None, 404),
    ("GET", "/v1/show?prefix=a&prefix=b", None, 400), ("GET", "/v1/list?limit=ten", None, 400),
    ("POST", "/v1/ban", b"[1]", 400), ("POST", "/v1/ban", b'{"prefix": "' + b"1" * 70000 + b'"}', 400),
])
def test_malformed_requests_are_usage_answers(tmp_path: Path, pki: Pki, method: str, path: str, body: bytes | None,
                                             status: int) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> tuple[int, dict, dict]:
        async with serving(service) as url:
            return await raw(url, method, path, pki.context(), {"Authorization": "Bearer " + SECRETS["ops"]}, body)

    got, answer, _ = run(scenario())
    assert got == status and answer["code"] == "usage", answer
    assert service.store.count_wanted() == 0


def test_every_request_is_audited_with_token_peer_op_prefix_and_result(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> None:
        async with serving(service) as url:
            await call(url, SECRETS["web1"], pki.context(), "ban", prefix=ATTACKER)
            with pytest.raises(RefusedError):
                await call(url, "f2b_wrong", pki.context(), "ban", prefix="203.0.113.9")

    run(scenario())
    audit = [(e.jail, e.prefix, e.detail) for e in service.store.query_events() if e.event == "api"]
    assert audit == [("web1", ATTACKER, "peer=127.0.0.1 op=ban result=active"),
                     ("-", "", "peer=127.0.0.1 op=ban result=refused")]  # an unknown client's body is not read


def test_tls_wrong_ca_and_mutual_tls(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki, client_ca=True)

    async def scenario() -> dict:
        async with serving(service) as url:
            with pytest.raises(UnavailableError, match="TLS|did not answer") as wrong_ca:
                await call(url, SECRETS["ops"], pki.context(wrong_ca=True), "ping")
            assert wrong_ca.value.exit_code == ExitCode.UNAVAILABLE
            with pytest.raises(UnavailableError):
                await call(url, SECRETS["ops"], pki.context(), "ping")  # no client certificate
            return await call(url, SECRETS["ops"], pki.context(client_cert=True), "ping")

    assert run(scenario())["ok"]


def test_tls_below_1_2_is_refused(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)
    ctx = pki.context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1

    async def scenario() -> None:
        async with serving(service) as url:
            with pytest.raises(UnavailableError):
                await call(url, SECRETS["ops"], ctx, "ping")

    run(scenario())


def test_metrics_over_https_need_a_token_and_count_what_happened(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> tuple[int, str]:
        async with serving(service) as url:
            ctx = pki.context()
            await call(url, SECRETS["web1"], ctx, "ban", prefix=ATTACKER, jail="sshd")
            await call(url, SECRETS["web2"], ctx, "ban", prefix=ATTACKER, jail="sshd")
            with pytest.raises(RefusedError):
                await call(url, SECRETS["web1"], ctx, "ban", prefix="198.51.100.9")
            unauthorized, _, _ = await raw(url, "GET", "/metrics", ctx)
            text = await asyncio.to_thread(_get_text, url, ctx)
            return unauthorized, text

    unauthorized, text = run(scenario())
    assert unauthorized == 401
    assert 'f2b_bgp_claims{jail="web1/sshd"} 1.0' in text and 'f2b_bgp_claims{jail="web2/sshd"} 1.0' in text
    assert 'f2b_bgp_routes{backend="memory",state="active"} 1.0' in text
    assert 'f2b_bgp_events_total{event="ban",reason="new"} 2.0' in text
    assert 'f2b_bgp_events_total{event="refuse",reason="protected"} 1.0' in text
    assert 'f2b_bgp_backend_ack_seconds_count{backend="memory"} 2.0' in text
    assert "f2b_bgp_store_writable 1.0" in text


def _get_text(url: str, ctx: ssl.SSLContext) -> str:
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=ctx, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": "Bearer " + SECRETS["ops"]})
    response = conn.getresponse()
    assert response.status == 200
    return response.read().decode()


def test_http_status_table_is_documented() -> None:
    block = DOC.split("| exit code | HTTP status |", 1)[1].split("\n\n", 1)[0]
    documented = dict(re.findall(r"^\| `(\w+)` \| (\d+)", block, re.M))
    assert {k: int(v) for k, v in documented.items()} == {c.name.lower(): s for c, s in HTTP_STATUS.items()}


def test_api_config_defaults_are_off() -> None:
    from f2b_bgp.config import parse_config

    config = parse_config({})
    assert config.api.https.listen == () and config.api.tokens == ()
    assert [str(x) for x in config.api.metrics_listen] == ["127.0.0.1:9180"]
    assert isinstance(config.api, ApiConfig)


def test_every_metric_of_the_grafana_dashboard_is_exported(tmp_path: Path) -> None:
    from f2b_bgp.metrics import renderer

    from .memory import make

    service, _, _ = make(tmp_path)
    text = renderer(service)().decode()
    exported = {re.sub(r"_total$", "", m) for m in re.findall(r"^# TYPE (\w+) ", text, re.M)}
    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana" / "f2b-bgp.json").read_text())
    used = {re.sub(r"_(bucket|total)$", "", m) for m in re.findall(r"\bf2b_bgp_\w+", json.dumps(dashboard))}
    assert used and used <= exported, used - exported


def test_list_pages_over_https_and_an_edge_sees_its_own_claims_only(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> list[dict]:
        async with serving(service) as url:
            ctx = pki.context()
            for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
                await call(url, SECRETS["web1"], ctx, "ban", prefix=address)
            await call(url, SECRETS["web2"], ctx, "ban", prefix="203.0.113.2")
            pages, after = [], ""
            while after is not None:
                page = await call(url, SECRETS["web2"], ctx, "list", limit=1, after=after)
                pages.append(page)
                after = page["next"]
            return pages

    pages = run(scenario())
    assert [[b["prefix"] for b in p["bans"]] for p in pages] == [[], ["203.0.113.2/32"], [], []]
    assert [o["jail"] for o in pages[1]["bans"][0]["owners"]] == ["web2/cli"]


def test_events_over_https_for_an_operator_not_for_an_edge(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)

    async def scenario() -> dict:
        async with serving(service) as url:
            ctx = pki.context()
            await call(url, SECRETS["web1"], ctx, "ban", prefix=ATTACKER, jail="sshd")
            with pytest.raises(RefusedError, match="may not call 'events'"):
                await call(url, SECRETS["web1"], ctx, "events")
            return await call(url, SECRETS["ops"], ctx, "events", since=0.5, limit=50, jail="web1/sshd")

    events = run(scenario())["events"]
    assert [(e["event"], e["prefix"]) for e in events] == [("ban", ATTACKER + "/32")]


def test_an_edge_withdraws_its_widened_claim_by_address_or_by_prefix(tmp_path: Path, pki: Pki) -> None:
    service = central_service(tmp_path, pki)
    wide = parse_config({"guards": {"protected": ["198.51.100.0/24"], "allow_special": ["2001:db8::/32"],
                                    "min_length_ipv6": 64}, "aggregation": {"ipv6_ban_length": 64}})
    service.config = dataclasses.replace(service.config, guards=wide.guards, aggregation=wide.aggregation)

    async def scenario() -> tuple[dict, dict]:
        async with serving(service) as url:
            ctx = pki.context()
            for token, address in (("web1", "2001:db8:7::5"), ("web1", "2001:db8:7::6"), ("web2", "2001:db8:7::7")):
                assert (await call(url, SECRETS[token], ctx, "ban", prefix=address, jail="sshd"))["ok"]
            by_address = await call(url, SECRETS["web1"], ctx, "withdraw", prefix="2001:db8:7::5")
            by_prefix = await call(url, SECRETS["web1"], ctx, "withdraw", prefix="2001:db8:7::/64")
            return by_address, by_prefix

    by_address, by_prefix = run(scenario())
    assert (by_address["removed"], by_address["covered"]) == (["web1/sshd"], ["2001:db8:7::/64"])
    assert by_prefix["removed"] == ["web1/sshd"]
    assert [(c.jail, c.address) for c in service.store.claims()] == [("web2/sshd", "2001:db8:7::7")]
