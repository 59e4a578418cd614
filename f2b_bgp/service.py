"""Ban, unban, withdraw, expire and reconcile: keeps every backend converged with the store."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from netaddr import IPNetwork

from . import __version__
from .backends.base import Backend, BackendUnavailable
from .config import Config
from .errors import LimitError, RefusedError
from .guards import Accepted, HostFacts, Refused, check_capacity, check_prefix, check_text
from .spool import Spool
from .store import ACTIVE, PENDING, Claim, Store

log = logging.getLogger(__name__)

PERMANENT = -1
RATE_WINDOW = 60.0


@dataclass(frozen=True)
class BanRequest:
    prefix: str
    jail: str = "cli"
    bantime: int | None = None  # seconds; -1 permanent (capped); None: the configured default
    reason: str = ""
    started: float | None = None  # original ban time of a restored ban


class Service:
    def __init__(
        self,
        config: Config,
        store: Store,
        backends: Sequence[Backend],
        host: HostFacts,
        read_host: Callable[[], Awaitable[HostFacts]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.backends = list(backends)
        self.host = host
        self.read_host = read_host
        self.clock = clock
        self.started = clock()
        self.recent: deque[float] = deque()
        self.locks: dict[str, list[Any]] = {}  # prefix -> [lock, users]
        self.wake = asyncio.Event()
        self.last_reconcile: dict[str, Any] = {}
        self.queue: Spool | None = None  # the fail2ban queue, once the daemon has opened it
        for backend in self.backends:
            backend.on_reset = self._replayer(backend)
            backend.on_lost = self._loser(backend)

    # requests

    async def ban(self, req: BanRequest) -> dict[str, Any]:
        prefix = self._accept(req.prefix)
        now = self.clock()
        is_new = not self.store.claims(prefix=prefix)
        if is_new:
            self._check_capacity(now)
        expires = self._expiry(req, now)
        if expires is not None and expires <= now:
            return {"prefix": prefix, "state": "expired", "expires": expires, "new": False}
        created = min(req.started or now, now)
        fresh = self.store.upsert_claim(Claim(prefix, req.jail, req.reason, created, expires))
        if is_new:
            self.recent.append(now)
        self.wake.set()
        await self._converge([prefix])
        state = self._state(prefix)
        log.info("ban prefix=%s jail=%s expires=%.0f new=%s result=%s", prefix, req.jail, expires or 0, fresh, state)
        return {"prefix": prefix, "state": state, "expires": expires, "new": fresh}

    async def unban(self, text: str, jail: str) -> dict[str, Any]:
        prefix = self._parse(text)
        removed = self.store.remove_claim(prefix, jail)
        remaining = [c.jail for c in self.store.claims(prefix=prefix)]
        if removed and not remaining:
            await self._converge([prefix])
        log.info("unban prefix=%s jail=%s removed=%s remaining=%d", prefix, jail, removed, len(remaining))
        return {"prefix": prefix, "removed": removed, "remaining": remaining, "withdrawn": removed and not remaining}

    async def withdraw(self, text: str) -> dict[str, Any]:
        prefix = self._parse(text)
        jails = self.store.remove_prefix(prefix)
        await self._converge([prefix])
        log.info("withdraw prefix=%s removed=%s", prefix, ",".join(jails) or "-")
        return {"prefix": prefix, "removed": jails}

    async def flush(self, jail: str | None) -> dict[str, Any]:
        removed = self.store.remove_jail(jail)
        prefixes = sorted({c.prefix for c in removed})
        await self._converge(prefixes)
        log.info("flush jail=%s claims=%d prefixes=%d", jail or "*", len(removed), len(prefixes))
        return {"removed": len(removed)}

    def listing(self, jail: str | None = None) -> dict[str, Any]:
        states = self.store.states()
        grouped: dict[str, list[Claim]] = {}
        for claim in self.store.claims():
            grouped.setdefault(claim.prefix, []).append(claim)
        bans = [
            self._describe(prefix, claims, states.get(prefix, {}))
            for prefix, claims in grouped.items()
            if jail is None or any(c.jail == jail for c in claims)
        ]
        return {"bans": bans}

    def show(self, text: str) -> dict[str, Any]:
        verdict = check_text(text, self.config.guards, self.host)
        if isinstance(verdict, Refused) and verdict.guard == "input":
            raise RefusedError(str(verdict))
        prefix = str(verdict.prefix) if isinstance(verdict, Accepted) else _canonical(text)
        claims = self.store.claims(prefix=prefix)
        states = self.store.states_of(prefix)
        return {
            "prefix": prefix,
            "blackholed": bool(claims) and self._state(prefix) == ACTIVE,
            "bans": [self._describe(prefix, claims, states)] if claims else [],
            "verdict": _verdict(verdict),
        }

    def status(self) -> dict[str, Any]:
        states = self.store.states()
        wanted = self.store.wanted()
        pending = sum(1 for p in wanted if self._state(p, states.get(p, {})) != ACTIVE)
        self._trim_rate(self.clock())
        return {
            "version": __version__,
            "uptime": round(self.clock() - self.started, 1),
            "routes": {"active": len(wanted) - pending, "pending": pending},
            "limits": {"max_routes": self.config.guards.max_routes, "max_rate": self.config.guards.max_rate,
                       "bans_last_minute": len(self.recent)},
            "backends": {b.name: {**b.status(), "pending": len(_stuck(b, wanted, states))} for b in self.backends},
            "last_reconcile": self.last_reconcile,
            "queue": self.queue_status(),
        }

    def queue_status(self) -> dict[str, Any] | None:
        """The fail2ban queue: lines waiting, the age of the oldest, counts since start, why it is not read."""
        return self.queue.status() if self.queue is not None else None

    def events(self, since: float | None, prefix: str | None, jail: str | None, limit: int) -> dict[str, Any]:
        """The newest `limit` events matching every filter given, oldest first."""
        if prefix is not None:
            prefix = self._parse(prefix)
        rows = self.store.query_events(since=since, prefix=prefix, jail=jail, limit=limit)
        return {"events": [{"ts": ts, "event": ev, "prefix": p, "jail": j, "detail": d} for ts, ev, p, j, d in rows]}

    # background work

    async def run_expiry(self) -> None:
        while True:
            self.wake.clear()
            await _survive("expiry", self._expire_due())
            nxt = self.store.next_expiry()
            delay = 60.0 if nxt is None else min(max(nxt - self.clock(), 0.0), 60.0)
            try:
                await asyncio.wait_for(self.wake.wait(), delay)
            except TimeoutError:
                pass

    async def _expire_due(self) -> None:
        expired = self.store.expire(self.clock())
        for claim in expired:
            log.info("expire prefix=%s jail=%s", claim.prefix, claim.jail)
        if expired:
            await self._converge(sorted({c.prefix for c in expired}))

    async def run_maintenance(self) -> None:
        """Retry pending routes often; check every backend for drift now and then."""
        next_reconcile = self.clock() + self.config.daemon.reconcile_interval
        while True:
            await asyncio.sleep(self.config.daemon.retry_interval)
            if self.clock() >= next_reconcile:
                await _survive("reconcile", self.reconcile("periodic"))
                next_reconcile = self.clock() + self.config.daemon.reconcile_interval
            else:
                await _survive("retry", self._retry_pending())

    async def reconcile(self, why: str) -> dict[str, Any]:
        if self.read_host is not None:
            self.host = await self.read_host()
        withdrawn = self._enforce_guards()
        report: dict[str, Any] = {"why": why, "at": self.clock(), "guard_withdrawn": withdrawn}
        for backend in self.backends:
            report[backend.name] = await self._reconcile_backend(backend)
        self.last_reconcile = report
        return report

    # internals

    def _accept(self, text: str) -> str:
        verdict = check_text(text, self.config.guards, self.host)
        if isinstance(verdict, Refused):
            log.warning("refuse input=%r guard=%s reason=%r", text[:64], verdict.guard, verdict.reason)
            self.store.event("refuse", _canonical(text), detail=str(verdict))
            raise RefusedError(str(verdict), hint=_hint(verdict))
        return str(verdict.prefix)

    def _parse(self, text: str) -> str:
        verdict = check_text(text, self.config.guards, self.host)
        if isinstance(verdict, Refused) and verdict.guard == "input":
            raise RefusedError(str(verdict))
        return str(verdict.prefix) if isinstance(verdict, Accepted) else _canonical(text)

    def _check_capacity(self, now: float) -> None:
        self._trim_rate(now)
        refused = check_capacity(self.store.count_wanted(), len(self.recent), self.config.guards)
        if refused is not None:
            log.error("limit guard=%s reason=%r", refused.guard, refused.reason)
            raise LimitError(str(refused), hint=f"raise guards.{refused.guard.replace('-', '_')} if this is expected")

    def _trim_rate(self, now: float) -> None:
        while self.recent and self.recent[0] <= now - RATE_WINDOW:
            self.recent.popleft()

    def _expiry(self, req: BanRequest, now: float) -> float | None:
        cap = self.config.daemon.max_bantime
        bantime = self.config.daemon.default_bantime if req.bantime in (None, 0) else req.bantime
        if bantime == PERMANENT or bantime > cap:
            bantime = cap
        return min(req.started or now, now) + bantime

    def _state(self, prefix: str, states: dict[str, tuple[str, str]] | None = None) -> str:
        states = self.store.states_of(prefix) if states is None else states
        ok = all(states.get(b.name, (PENDING, ""))[0] == ACTIVE for b in self.backends)
        return ACTIVE if ok else PENDING

    def _describe(self, prefix: str, claims: list[Claim], states: dict[str, tuple[str, str]]) -> dict[str, Any]:
        return {
            "prefix": prefix,
            "state": self._state(prefix, states),
            "owners": [{"jail": c.jail, "reason": c.reason, "created": c.created, "expires": c.expires} for c in claims],
            "backends": {b.name: {"state": states.get(b.name, (PENDING, ""))[0], "error": states.get(b.name, ("", ""))[1]}
                         for b in self.backends},
        }

    def _locked(self, prefixes: Iterable[str]) -> _PrefixLocks:
        return _PrefixLocks(self.locks, sorted(set(prefixes)))

    async def _converge(self, prefixes: Sequence[str], backends: Sequence[Backend] | None = None) -> None:
        """Bring the backends to the store for these prefixes; the store is read under their locks."""
        if not prefixes:
            return
        async with self._locked(prefixes):
            wanted = self.store.wanted_among(list(prefixes))
            add = [p for p in prefixes if p in wanted]
            remove = [p for p in prefixes if p not in wanted]
            await asyncio.gather(*(self._push(b, add, remove) for b in backends or self.backends))
            if remove:
                self.store.drop_states(remove)

    async def _push(self, backend: Backend, add: list[str], remove: list[str]) -> None:
        if add:
            try:
                failures = {str(p): e for p, e in (await backend.announce([IPNetwork(p) for p in add])).items()}
            except BackendUnavailable as err:
                failures = {p: str(err) for p in add}
            done = [p for p in add if p not in failures]
            self.store.set_states(done, backend.name, ACTIVE)
            for prefix, error in failures.items():
                self.store.set_states([prefix], backend.name, PENDING, error)
            if failures:
                log.warning("announce backend=%s pending=%d error=%r", backend.name, len(failures),
                            next(iter(failures.values())))
        if remove:
            try:
                failures = await backend.withdraw([IPNetwork(p) for p in remove])
            except BackendUnavailable as err:
                failures = {IPNetwork(p): str(err) for p in remove}
            for prefix, error in failures.items():
                log.warning("withdraw backend=%s prefix=%s error=%r (reconcile retries)", backend.name, prefix, error)

    async def _retry_pending(self) -> None:
        for backend in self.backends:
            if not backend.ready:
                continue
            # read with no await in between: a locked prefix has a request in flight, which owns it
            stuck = [p for p in _stuck(backend, self.store.wanted(), self.store.states()) if p not in self.locks]
            if stuck:
                await self._converge(stuck, [backend])

    async def _reconcile_backend(self, backend: Backend) -> dict[str, Any]:
        actual = await backend.installed()
        if actual is None:
            return {"checked": False}
        have = {str(p) for p in actual}
        wanted = self.store.wanted()
        states = self.store.states()
        missing = sorted(wanted - have)
        stale = sorted(have - wanted)
        in_place = [p for p in wanted & have if states.get(p, {}).get(backend.name, ("", ""))[0] != ACTIVE]
        self.store.set_states(in_place, backend.name, ACTIVE)
        await self._converge(missing + stale, [backend])
        if missing or stale:
            log.warning("drift backend=%s missing=%d stale=%d (repaired)", backend.name, len(missing), len(stale))
        return {"checked": True, "missing": len(missing), "stale": len(stale)}

    def _replayer(self, backend: Backend) -> Callable[[], Awaitable[None]]:
        async def replay() -> None:
            log.info("replay backend=%s", backend.name)
            await self._reconcile_backend(backend)

        return replay

    def _loser(self, backend: Backend) -> Callable[[str], None]:
        def lost(why: str) -> None:
            active = [p for p, s in self.store.states().items() if s.get(backend.name, ("", ""))[0] == ACTIVE]
            self.store.set_states(active, backend.name, PENDING, f"{backend.name}: {why}")
            log.warning("lost backend=%s pending=%d why=%r", backend.name, len(active), why)

        return lost

    def _enforce_guards(self) -> list[str]:
        """Withdraw stored bans that the current config refuses (fail closed after a config change)."""
        withdrawn = []
        for prefix in sorted(self.store.wanted()):
            verdict = check_prefix(IPNetwork(prefix), self.config.guards, self.host)
            if isinstance(verdict, Refused):
                self.store.remove_prefix(prefix, event="guard")
                log.warning("guard-withdraw prefix=%s reason=%r", prefix, str(verdict))
                withdrawn.append(prefix)
        over = self.store.count_wanted() - self.config.guards.max_routes
        if over > 0:
            newest = sorted({c.prefix: c.created for c in self.store.claims()}.items(), key=lambda kv: -kv[1])[:over]
            for prefix, _ in newest:
                self.store.remove_prefix(prefix, event="guard")
                log.warning("guard-withdraw prefix=%s reason='over max_routes'", prefix)
                withdrawn.append(prefix)
        return withdrawn


class _PrefixLocks:
    """Hold one lock per prefix, taken in sorted order (no deadlock); unused locks are dropped."""

    def __init__(self, locks: dict[str, list[Any]], prefixes: list[str]) -> None:
        self.locks, self.prefixes = locks, prefixes

    async def __aenter__(self) -> None:
        for prefix in self.prefixes:
            entry = self.locks.setdefault(prefix, [asyncio.Lock(), 0])
            entry[1] += 1
            await entry[0].acquire()

    async def __aexit__(self, *exc: object) -> None:
        for prefix in self.prefixes:
            entry = self.locks[prefix]
            entry[0].release()
            entry[1] -= 1
            if entry[1] == 0:
                del self.locks[prefix]


async def _survive(what: str, work: Awaitable[Any]) -> None:
    """Background work logs an unexpected failure and tries again next round instead of dying."""
    try:
        await work
    except Exception:  # noqa: BLE001 - the loop must outlive one bad round
        log.exception("%s failed; retrying next round", what)


def _stuck(backend: Backend, wanted: set[str], states: dict[str, dict[str, tuple[str, str]]]) -> list[str]:
    """The wanted prefixes this backend has not acknowledged."""
    return [p for p in wanted if states.get(p, {}).get(backend.name, (PENDING, ""))[0] != ACTIVE]


def _canonical(text: str) -> str:
    try:
        return str(IPNetwork(text))
    except Exception:  # noqa: BLE001 - only for display of text already refused
        return text[:64]


def _verdict(verdict: Accepted | Refused) -> dict[str, Any]:
    if isinstance(verdict, Accepted):
        return {"accepted": True, "guard": "", "reason": ""}
    return {"accepted": False, "guard": verdict.guard, "reason": verdict.reason}


def _hint(verdict: Refused) -> str:
    return {
        "protected": "the address is inside guards.protected",
        "length": "only host routes are accepted unless guards.min_length_ipv4/ipv6 allow shorter",
        "special": "special-purpose range; list it in guards.allow_special to allow it",
    }.get(verdict.guard, "")
