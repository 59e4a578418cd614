"""Backend "remote": forward this daemon's claims to a central f2b-bgp over its HTTPS API.

Each claim travels with its owner, reason, start and ban time, so the central
records it as TOKEN/JAIL and withdraws it at the same expiry even if this
edge is gone for good. A prefix is acknowledged once the central stored every
claim on it. While the central is away nothing is sent (announce fails at
once, the service keeps the prefixes pending) and a probe asks every
retry_interval; when it answers, the service's replay lists this token's
claims on the central (installed) and sends what is missing and withdraws
what is stale. The edge's own store is the queue: nothing is lost with a
restart of either side.

The central must hold this edge's token with own_claims_only (the default):
withdraw then removes this edge's claims on a prefix and no other.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import aiohttp

from ..config import RemoteConfig
from ..errors import ConfigError, F2bBgpError
from ..http_client import client_context, read_token
from ..logfmt import kv
from ..model import BackendStatus, Claim, Prefix
from .base import Backend, BackendUnavailable, Failures

log = logging.getLogger(__name__)

CONNECTIONS = 16  # requests in flight to one central
REFUSAL_HOLD = 60.0  # a prefix the central refused is not asked again for this long (its audit log would fill)
MAX_ERROR = 200
MAX_PAGES = 10000  # of `list`: a central answering pages for ever cannot hold the edge up


class CentralDown(BackendUnavailable):
    """The central did not answer, or refused this edge's token: nothing it says can be trusted now."""


class RemoteBackend(Backend):
    def __init__(self, config: RemoteConfig, retry_interval: float) -> None:
        super().__init__()
        self.name = config.name
        self.config = config
        self.retry_interval = retry_interval
        self.session: aiohttp.ClientSession | None = None
        self.up = False
        self.last_error = "not connected yet"
        self.counts: Counter[str] = Counter()
        self.refused: dict[Prefix, tuple[float, str]] = {}
        self.prober: asyncio.Task[None] | None = None

    async def start(self) -> None:
        try:
            token = read_token(self.config.token_file)
            ctx = client_context(_text(self.config.ca_file), _text(self.config.client_certificate),
                                 _text(self.config.client_key))
        except (F2bBgpError, OSError) as err:
            raise ConfigError([f"backends.remote {self.name}: {getattr(err, 'message', err)}"]) from err
        self.session = aiohttp.ClientSession(
            base_url=self.config.url, headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            connector=aiohttp.TCPConnector(ssl=ctx, limit=CONNECTIONS))
        await self._probe()
        self.prober = asyncio.create_task(self._probe_loop())

    async def stop(self) -> None:
        if self.prober is not None:
            self.prober.cancel()
            await asyncio.gather(self.prober, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    @property
    def ready(self) -> bool:
        return self.up

    async def announce(self, prefixes: Sequence[Prefix]) -> Failures:
        if not self.up:
            raise BackendUnavailable(self.last_error)
        assert self.claims_of is not None, "the service sets claims_of"
        now = time.monotonic()
        failures: Failures = {}
        sendable = []
        for prefix in prefixes:
            held = self.refused.get(prefix)
            if held is not None and now - held[0] < REFUSAL_HOLD:
                failures[prefix] = held[1]
            else:
                sendable.append(prefix)
        answers = await asyncio.gather(*(self._send_claims(p, self.claims_of(p)) for p in sendable),
                                       return_exceptions=True)
        for prefix, outcome in zip(sendable, answers):
            if isinstance(outcome, BaseException):
                failures[prefix] = _one_line(outcome)
            elif outcome:
                failures[prefix] = outcome
                self.refused[prefix] = (now, outcome)
            else:
                self.refused.pop(prefix, None)
        return failures

    async def withdraw(self, prefixes: Sequence[Prefix]) -> Failures:
        if not self.up:
            raise BackendUnavailable(self.last_error)
        answers = await asyncio.gather(*(self._request("POST", "withdraw", {"prefix": str(p)}) for p in prefixes),
                                       return_exceptions=True)
        failures: Failures = {}
        for prefix, answer in zip(prefixes, answers):
            self.refused.pop(prefix, None)
            if isinstance(answer, BaseException):
                failures[prefix] = _one_line(answer)
            elif not answer["ok"]:
                failures[prefix] = f"central: {answer.get('code')}: {str(answer.get('error'))[:MAX_ERROR]}"
        return failures

    async def installed(self) -> set[Prefix] | None:
        """This token's claims on the central (it shows an own-claims token nothing else), page by page."""
        found: set[Prefix] = set()
        after = ""
        try:
            for _ in range(MAX_PAGES):
                answer = await self._request("GET", "list", {"after": after} if after else {})
                if not answer["ok"]:
                    raise ValueError(f"{answer.get('code')}: {str(answer.get('error'))[:MAX_ERROR]}")
                found |= {Prefix.parse(b["prefix"]) for b in answer["bans"]}
                if answer["next"] is None:
                    return found
                after = str(answer["next"])
            raise ValueError(f"more than {MAX_PAGES} pages")
        except (BackendUnavailable, KeyError, TypeError, ValueError) as err:
            log.warning(kv("remote-list-failed", backend=self.name, error=_one_line(err)))
            return None

    def status(self) -> BackendStatus:
        return BackendStatus(ready=self.up, last_error=self.last_error, settings={"url": self.config.url},
                             counters=dict(self.counts))

    # internals

    async def _send_claims(self, prefix: Prefix, claims: list[Claim]) -> str:
        """Every claim on PREFIX to the central: "" when it stored them all, else why not (one line)."""
        for claim in claims:
            answer = await self._request("POST", "ban", _ban_fields(claim))
            if not answer["ok"]:
                self.counts["refused"] += 1
                return f"central refused {claim.jail}: {answer.get('code')}: {str(answer.get('error'))[:MAX_ERROR]}"
            self.counts["acknowledged"] += 1
        return ""

    async def _request(self, method: str, op: str, fields: dict[str, Any]) -> dict[str, Any]:
        """The central's answer object; CentralDown when it did not answer or refused our token."""
        assert self.session is not None
        self.counts["sent"] += 1
        try:
            if method == "GET":
                response = await self.session.get(f"/v1/{op}", params=fields)
            else:
                response = await self.session.post(f"/v1/{op}", json=fields)
            async with response:
                answer = await response.json(content_type=None)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise self._down(f"{type(err).__name__}: {_one_line(err)}") from err
        if not isinstance(answer, dict) or "ok" not in answer:
            raise self._down(f"HTTP {status}: not an API answer")
        if status == 401 or status >= 500:
            raise self._down(f"HTTP {status}: {answer.get('code')}: {str(answer.get('error'))[:MAX_ERROR]}")
        return answer

    def _down(self, why: str) -> CentralDown:
        self.last_error = f"central {self.config.url}: {why}"
        if self.up:
            self.up = False
            log.warning(kv("central-away", backend=self.name, error=why))
            if self.on_lost is not None:
                self.on_lost(why)
        self.counts["errors"] += 1
        return CentralDown(self.last_error)

    async def _probe(self) -> None:
        try:
            answer = await self._request("GET", "ping", {})
        except CentralDown:
            return
        if not answer["ok"]:  # e.g. a token without "ping": nothing else would work either
            self._down(f"{answer.get('code')}: {str(answer.get('error'))[:MAX_ERROR]}")
            return
        self.up, self.last_error = True, ""
        self.refused.clear()
        log.info(kv("central-up", backend=self.name, url=self.config.url))

    async def _probe_loop(self) -> None:
        """While the central is away, ask every retry_interval; when it is back, the service replays."""
        while True:
            await asyncio.sleep(self.retry_interval)
            if self.up:
                continue
            await self._probe()
            if self.up and self.on_reset is not None:
                try:
                    await self.on_reset()
                except Exception:  # noqa: BLE001 - the next reconcile tries again
                    log.exception("replay to %s failed", self.name)


def _ban_fields(claim: Claim) -> dict[str, Any]:
    """The claim as a ban request: the same start and expiry at the central (its max_bantime caps it)."""
    bantime = -1 if claim.expires is None else max(1, math.ceil(claim.expires - claim.created))
    return {"prefix": str(claim.prefix), "jail": claim.jail, "reason": claim.reason, "started": claim.created,
            "bantime": bantime}


def _text(path: object) -> str | None:
    return None if path is None else str(path)


def _one_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:MAX_ERROR]
