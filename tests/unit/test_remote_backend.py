"""An edge daemon's remote backend against a real central HTTPS API on loopback (no mocks).

| step | edge does | central holds |
|---|---|---|
| 1 | ban .7 (sshd, 600 s) | web1/sshd on .7, the same start and expiry |
| 2 | central away: ban .8, unban .7, ban .9 | unchanged; the edge shows .8 and .9 pending |
| 3 | central back | exactly the edge's claims: .8 and .9, .7 gone |
| 4 | ban a prefix the central protects | the edge keeps it pending with the central's reason |

And two centrals: each gets every claim; one away leaves the other current, and catches up on its return.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

from f2b_bgp.backends.remote import RemoteBackend
from f2b_bgp.config import parse_config
from f2b_bgp.guards import HostFacts
from f2b_bgp.https_api import HttpsApi
from f2b_bgp.model import Claim, Prefix, RouteState
from f2b_bgp.service import BanRequest, Service
from f2b_bgp.store import Store

from .central import SECRETS, Pki, central_service

RETRY = 0.05


def edge_service(tmp_path: Path, pki: Pki, url: str, clock: Callable[[], float]) -> tuple[Service, RemoteBackend]:
    token = tmp_path / "web1.token"
    token.write_text(SECRETS["web1"] + "\n")
    config = parse_config({"guards": {"protected": ["192.0.2.0/24"], "allow_special": ["203.0.113.0/24",
                                                                                       "198.51.100.0/24"]},
                           "backends": {"kernel": {"enabled": False}, "remote": [
                               {"name": "central1", "url": url, "token_file": str(token),
                                "ca_file": str(pki.ca_file)}]}})
    [remote] = config.remotes
    backend = RemoteBackend(remote, RETRY)
    store = Store(tmp_path / "edge.db")
    store.mark_settled()
    return Service(config, store, [backend], HostFacts(), clock=clock), backend


async def wait_for(predicate: Callable[[], object], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)


def central_claims(central: Service) -> dict[str, tuple[str, float | None]]:
    return {f"{c.prefix.address} {c.jail}": (c.reason, c.expires) for c in central.store.claims()}


def test_edge_claims_reach_the_central_and_survive_its_absence(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    (tmp_path / "central").mkdir()
    central = central_service(tmp_path / "central", pki)

    async def scenario() -> None:
        api = HttpsApi(central)
        await api.start()
        assert api.runner is not None
        port = api.runner.addresses[0][1]
        edge, backend = edge_service(tmp_path, pki, f"https://127.0.0.1:{port}", central.clock)
        await backend.start()
        try:
            await edge.reconcile("start")
            # 1. the claim arrives with its owner, reason and expiry
            result = await edge.ban(BanRequest("203.0.113.7", "sshd", 600, "ssh"))
            assert result.state is RouteState.ACTIVE
            assert central_claims(central) == {"203.0.113.7 web1/sshd": ("ssh", central.clock() + 600)}
            # 2. the central goes away: the edge keeps banning, its claims wait in its own store
            await api.stop()
            assert (await edge.ban(BanRequest("203.0.113.8", "sshd", 600))).state is RouteState.PENDING
            assert not backend.ready and "central" in edge.status().backends["central1"].last_error
            await edge.unban("203.0.113.7", "sshd")
            assert (await edge.ban(BanRequest("203.0.113.9", "nginx", 300))).state is RouteState.PENDING
            # 3. back on the same address: the edge reconciles by listing its claims there
            central.config = dataclasses.replace(central.config, api=dataclasses.replace(
                central.config.api, https=pki.https(port)))
            api = HttpsApi(central)
            await api.start()
            expected = {"203.0.113.8 web1/sshd": ("", central.clock() + 600),
                        "203.0.113.9 web1/nginx": ("", central.clock() + 300)}
            await wait_for(lambda: central_claims(central) == expected, "the central holds the edge's claims")
            await wait_for(lambda: backend.ready and edge.status().routes.pending == 0, "edge in sync again")
            # 4. the central's own guards apply on top: the edge keeps it pending and says why
            refused = await edge.ban(BanRequest("198.51.100.9", "sshd", 60))
            assert refused.state is RouteState.PENDING
            error = edge.show("198.51.100.9").bans[0].backends["central1"].error
            assert "central refused sshd: refused: protected" in error, error
            assert not central.store.is_wanted(Prefix.parse("198.51.100.9"))
        finally:
            await backend.stop()
            await api.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_installed_lists_every_page_of_this_edges_claims_only(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    (tmp_path / "central").mkdir()
    central = central_service(tmp_path / "central", pki)
    now = central.clock()
    mine = {Prefix.parse(f"2001:db8:203::{i:x}") for i in range(1, 1201)}  # three pages of 500
    for prefix in sorted(mine):
        central.store.upsert_claim(Claim(prefix, "web1/sshd", "", now, now + 600))
    for i in range(1, 700, 3):  # another edge's claims, some on the same prefixes
        central.store.upsert_claim(Claim(Prefix.parse(f"2001:db8:203::{i:x}"), "web2/sshd", "", now, now + 600))
    central.store.upsert_claim(Claim(Prefix.parse("203.0.113.99"), "web2/sshd", "", now, now + 600))

    async def scenario() -> set[Prefix] | None:
        api = HttpsApi(central)
        await api.start()
        assert api.runner is not None
        _, backend = edge_service(tmp_path, pki, f"https://127.0.0.1:{api.runner.addresses[0][1]}", central.clock)
        await backend.start()
        try:
            return await backend.installed()
        finally:
            await backend.stop()
            await api.stop()

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == mine


def test_two_centrals_each_get_every_claim_and_one_away_leaves_the_other_current(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    centrals = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        centrals.append(central_service(tmp_path / name, pki))

    async def scenario() -> None:
        apis = [HttpsApi(c) for c in centrals]
        for api in apis:
            await api.start()
        ports = [api.runner.addresses[0][1] for api in apis if api.runner is not None]
        token = tmp_path / "web1.token"
        token.write_text(SECRETS["web1"] + "\n")
        config = parse_config({
            "guards": {"allow_special": ["203.0.113.0/24"]},
            "backends": {"kernel": {"enabled": False}, "remote": [
                {"name": f"central-{n}", "url": f"https://127.0.0.1:{p}", "token_file": str(token),
                 "ca_file": str(pki.ca_file)} for n, p in zip("ab", ports)]}})
        backends = [RemoteBackend(remote, RETRY) for remote in config.remotes]
        store = Store(tmp_path / "edge.db")
        store.mark_settled()
        edge = Service(config, store, backends, HostFacts(), clock=centrals[0].clock)
        for backend in backends:
            await backend.start()
        try:
            assert (await edge.ban(BanRequest("203.0.113.7", "sshd", 600))).state is RouteState.ACTIVE
            await apis[1].stop()  # central b away: a keeps getting every claim, the edge says b owes them
            result = await edge.ban(BanRequest("203.0.113.8", "sshd", 600))
            assert result.state is RouteState.PENDING
            states = {n: s.state for n, s in edge.show("203.0.113.8").bans[0].backends.items()}
            assert states == {"central-a": RouteState.ACTIVE, "central-b": RouteState.PENDING}
            assert sorted(central_claims(centrals[0])) == ["203.0.113.7 web1/sshd", "203.0.113.8 web1/sshd"]
            assert sorted(central_claims(centrals[1])) == ["203.0.113.7 web1/sshd"]
            centrals[1].config = dataclasses.replace(centrals[1].config, api=dataclasses.replace(
                centrals[1].config.api, https=pki.https(ports[1])))
            apis[1] = HttpsApi(centrals[1])
            await apis[1].start()
            await wait_for(lambda: central_claims(centrals[1]) == central_claims(centrals[0]), "central b caught up")
            await wait_for(lambda: edge.status().routes.pending == 0, "the edge sees both centrals current")
        finally:
            for backend in backends:
                await backend.stop()
            for api in apis:
                await api.stop()

    asyncio.run(asyncio.wait_for(scenario(), 60))
