"""Ban, unban, withdraw, expire and reconcile: keeps every backend converged with the store.

Every operation takes the locks of the prefixes it touches before it changes
the store, and holds them until the backends answered, so a reconcile never
counts or touches a prefix with an operation in flight.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from . import __version__
from .address import canonical_text, shown
from .aggregation import (ESCALATED, ESCALATION_OWNER, Member, RecentBans, Widening, decide, escalation_cover, reason,
                          widen)
from .backends.base import Backend, BackendUnavailable
from .config import Config
from .errors import F2bBgpError, LimitError, RefusedError, RequestError, StoreError
from .guards import Accepted, GuardPolicy, HostFacts, Refused, check_capacity, check_prefix, check_text
from .logfmt import kv
from .names import name_problem
from .model import (BanResult, BanView, Claim, Drift, EventList, FlushResult, Limits, Listing, Owner, Prefix,
                    QueueStatus, ReconcileReport, RouteCounts, RouteState, ShowResult, Status, UnbanResult, Verdict,
                    WithdrawResult)
from .routebook import RouteBook
from .spool import Spool
from .stats import Stats
from .store import Store

log = logging.getLogger(__name__)

PERMANENT = -1
RATE_WINDOW = 60.0
STORE_RETRY_MAX = 60.0  # expiries on a store that fails
STORE_PROBE_MAX = 10.0  # one tiny write, to notice the store healed with no request to wait for
PRUNE_BATCH = 5000  # events deleted per transaction
LOG_EACH = 16  # bans of one batch logged a line each; a larger batch gets one summary line
LIST_PAGE = 500  # prefixes per `list` answer: a page is read and rendered in well under 50 ms
GUARDS_CHECKED = "guards.checked"  # meta key: the fingerprint of the guards every stored ban last passed


class Unaccounted(str, enum.Enum):
    """What to do with routes of ours that a backend holds and a new (or emptied) store does not know."""

    REFUSE = "refuse"  # the default: do not start (or, for a backend that tells only later, keep them)
    ADOPT = "adopt"  # keep them as bans of owner 'adopted' with the default bantime
    DISCARD = "discard"  # withdraw them


@dataclass(frozen=True)
class BanRequest:
    prefix: str  # as the client sent it: checked by the guards
    jail: str = "cli"
    bantime: int | None = None  # seconds; -1 permanent (capped); None or 0: the configured default
    reason: str = ""
    started: float | None = None  # original ban time of a restored ban


@dataclass(frozen=True)
class _Plan:
    """A ban request checked and turned into the claim it makes."""

    banned: Prefix  # the address as asked
    widening: Widening
    claim: Claim


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
        self.locks: dict[Prefix, _Lock] = {}
        self.wake = asyncio.Event()  # the expiry loop: a new expiry before the one it waits for, or the store healed
        self.expiry_wait_until = 0.0  # when the expiry loop wakes by itself
        self.last_reconcile: ReconcileReport | None = None
        # Routes of ours that a backend holds and the store cannot account for are kept, never
        # withdrawn on a guess, while the store is new (see daemon.check_unaccounted).
        self.keep_unaccounted = store.fresh
        self.unaccounted_choice = Unaccounted.REFUSE  # what the start was told (serve --adopt, --discard)
        self.unaccounted: dict[str, set[Prefix]] = {}  # per backend that reported since the start: kept
        self.book = RouteBook(b.name for b in self.backends)
        self.book.mark_pending(store.wanted())  # until the start-up reconcile has seen them in place
        self.queue: Spool | None = None  # the fail2ban queue, once the daemon has opened it
        self.stats = Stats()
        self.recent_bans = self._recent_bans()
        for backend in self.backends:
            backend.on_reset = self._replayer(backend)
            backend.on_lost = self._loser(backend)
            backend.claims_of = self._claims_of

    # requests

    async def ban(self, req: BanRequest) -> BanResult:
        outcome = (await self.ban_many([req]))[0]
        if isinstance(outcome, F2bBgpError):
            raise outcome
        return outcome

    async def ban_many(self, reqs: Sequence[BanRequest]) -> list[BanResult | F2bBgpError]:
        """Each ban, in order, as `ban` alone would do it, but as one batch: one store transaction
        and one push to each backend. Each gets its own result or its own error."""
        now = self.clock()
        outcomes: list[BanResult | F2bBgpError | None] = [None] * len(reqs)
        plans: dict[int, _Plan] = {}
        for i, req in enumerate(reqs):
            try:
                plan = self._plan(req, now)
            except F2bBgpError as err:
                outcomes[i] = err
                continue
            if isinstance(plan, BanResult):
                outcomes[i] = plan
            else:
                plans[i] = plan
        recorded = await self._commit([plan.claim for plan in plans.values()], now)
        done: list[tuple[Claim, BanResult]] = []
        for (i, plan), fresh in zip(plans.items(), recorded):
            if isinstance(fresh, F2bBgpError):
                outcomes[i] = fresh
                continue
            outcomes[i] = result = await self._banned(plan, fresh, now)
            done.append((plan.claim, result))
        _log_bans(done)
        return outcomes  # type: ignore[return-value]  # every slot is filled above

    def _plan(self, req: BanRequest, now: float) -> _Plan | BanResult:
        """The claim a ban request makes (its input checked by the guards), or its result if it already ended."""
        _check_owner(req.jail)
        if req.jail == ESCALATION_OWNER:
            raise RequestError(f"jail {ESCALATION_OWNER!r} is reserved for escalated bans")
        banned = self._accept(req.prefix)
        widening = self._widen(banned, req.jail)
        prefix = widening.prefix
        expires = self._expiry(req, now)
        if expires is not None and expires <= now:
            log.info(kv("ban", prefix=prefix, jail=req.jail, expires=expires, result="expired"))
            self.stats.count("ban", "expired")
            return BanResult(prefix, RouteState.EXPIRED, expires, self.store.route_expiry(prefix), False,
                             widening.address)
        claim = Claim(prefix, req.jail, req.reason, min(req.started or now, now), expires, widening.address,
                      widening.origin)
        return _Plan(banned, widening, claim)

    async def _banned(self, plan: _Plan, fresh: bool, now: float) -> BanResult:
        claim = plan.claim
        state = self.book.state(claim.prefix)
        self.stats.count("ban", "new" if fresh else "extend")
        escalated = await self._escalate(Member(claim.prefix, _text(plan.banned), claim.jail, claim.created), now)
        route_expiry = claim.expires if fresh and self.store.owner_count(claim.prefix) == 1 \
            else self.store.route_expiry(claim.prefix)
        return BanResult(claim.prefix, state, claim.expires, route_expiry, fresh, plan.widening.address, escalated)

    async def _commit(self, claims: list[Claim], now: float) -> list[bool | F2bBgpError]:
        """Record the claims in one transaction (the capacity checked for each new prefix, in order) and
        bring the backends to them. Per claim: whether it is new, or the error that refused it."""
        outcomes: list[bool | F2bBgpError] = [False] * len(claims)
        if not claims:
            return outcomes
        async with self._locked(c.prefix for c in claims):
            kept: list[int] = []
            new: set[Prefix] = set()
            for i, claim in enumerate(claims):
                if not self.store.is_wanted(claim.prefix) and claim.prefix not in new:
                    try:
                        self._check_capacity(now, len(new))
                    except LimitError as err:
                        outcomes[i] = err
                        continue
                    new.add(claim.prefix)
                kept.append(i)
            try:
                fresh = self.store.upsert_claims([claims[i] for i in kept])
            except StoreError as err:
                for i in kept:
                    outcomes[i] = err
                return outcomes
            for i, is_fresh in zip(kept, fresh):
                outcomes[i] = is_fresh
            self.recent.extend([now] * len(new))
            self.book.mark_pending(new)
            if any((e := claims[i].expires) is not None and e < self.expiry_wait_until for i in kept):
                self.wake.set()
            await self._apply(sorted({claims[i].prefix for i in kept}))
        return outcomes

    async def unban(self, text: str, jail: str) -> UnbanResult:
        """Remove JAIL's claim on the prefix, and its claims on wider prefixes made for this address."""
        _check_owner(jail)
        prefix = self._parse(text)
        routes = sorted({prefix, *(c.prefix for c in self._widened(prefix) if c.jail == jail)})
        async with self._locked(routes):
            removed = self.store.remove_claim(prefix, jail)
            route = prefix
            for claim in self._widened(prefix):
                if claim.jail == jail and claim.prefix in routes:
                    removed = self.store.remove_claim(claim.prefix, jail, address=claim.address) or removed
                    route = claim.prefix
            remaining = tuple(_label(c, route) for c in self.store.claims(prefix=route))
            await self._apply([p for p in routes if not self.store.is_wanted(p)])
        log.info(kv("unban", prefix=route, jail=jail, removed=removed, remaining=len(remaining)))
        if removed:
            self.stats.count("unban", "last" if not remaining else "shared")
        return UnbanResult(route, removed, remaining, removed and not remaining)

    async def withdraw(self, text: str) -> WithdrawResult:
        """Remove every claim on the prefix, and every claim on a wider prefix made for this address."""
        prefix = self._parse(text)
        routes = sorted({prefix, *(c.prefix for c in self._widened(prefix))})
        async with self._locked(routes):
            gone = self.store.remove_prefix(prefix)
            widened = [c for c in self._widened(prefix) if c.prefix in routes]
            self.store.remove_claims(widened, "withdraw")
            await self._apply([p for p in routes if not self.store.is_wanted(p)])
        removed = tuple(_label(c, prefix) for c in gone + widened)
        covered = tuple(self.store.covering(prefix))
        log.info(kv("withdraw", prefix=prefix, removed=",".join(removed) or "-", covered=len(covered)))
        self.stats.count("withdraw", "", len(removed))
        return WithdrawResult(prefix, removed, covered)

    async def flush(self, jail: str | None) -> FlushResult:
        if jail is not None:
            _check_owner(jail)
        seen = set(self.store.wanted()) if jail is None else self.store.prefixes_of(jail)
        async with self._locked(seen):
            # read again under the locks: only what is still there, and only prefixes we hold
            removed = [c for c in self.store.claims(jail=jail) if c.prefix in seen]
            self.store.remove_claims(removed, "flush")
            gone = sorted({c.prefix for c in removed if not self.store.is_wanted(c.prefix)})
            await self._apply(gone)
        log.info(kv("flush", jail=jail or "*", claims=len(removed), prefixes=len(gone)))
        return FlushResult(len(removed), len(gone))

    def listing(self, jail: str | None = None, after: str = "", limit: int = LIST_PAGE) -> Listing:
        """One page of the blackholed prefixes, in the order of their text; `next` continues it."""
        grouped: dict[Prefix, list[Claim]] = {}
        for claim in self.store.page(after, limit, jail):
            grouped.setdefault(claim.prefix, []).append(claim)
        bans = tuple(self._view(prefix, claims, jail) for prefix, claims in grouped.items())
        return Listing(bans, str(bans[-1].prefix) if len(bans) == limit else None)  # the store's text order

    def show(self, text: str) -> ShowResult:
        verdict = check_text(text, self.config.guards, self.host)
        if isinstance(verdict, Refused) and verdict.guard == "input":
            raise RefusedError(str(verdict))
        prefix = verdict.prefix if isinstance(verdict, Accepted) else self._parse(text)
        views = tuple(self._view(route, self.store.claims(prefix=route)) for route in self.store.covering(prefix))
        return ShowResult(
            prefix=prefix,
            blackholed=any(view.state is RouteState.ACTIVE for view in views),
            bans=views,
            verdict=Verdict(True) if isinstance(verdict, Accepted) else Verdict(False, verdict.guard, verdict.reason),
        )

    def status(self) -> Status:
        now = self.clock()
        self._trim_rate(now)
        pending = self.book.count_pending()
        guards = self.config.guards
        return Status(
            version=__version__,
            uptime=round(now - self.started, 1),
            routes=RouteCounts(self.store.count_wanted() - pending, pending),
            limits=Limits(guards.max_routes, guards.max_rate, len(self.recent)),
            store=self.store.health,
            backends={b.name: replace(b.status(), pending=len(self.book.pending[b.name]),
                                      unaccounted=len(self.unaccounted.get(b.name, ()))) for b in self.backends},
            last_reconcile=self.last_reconcile,
            queue=self.queue_status(),
        )

    def queue_status(self) -> QueueStatus | None:
        """The fail2ban queue: lines waiting, the age of the oldest, counts since start, why it is not read."""
        return self.queue.status() if self.queue is not None else None

    def events(self, since: float | None, prefix: str | None, jail: str | None, limit: int) -> EventList:
        """The newest `limit` events matching every filter given, oldest first."""
        text = None if prefix is None else str(self._parse(prefix))
        return EventList(tuple(self.store.query_events(since=since, prefix=text, jail=jail, limit=limit)))

    # background work

    async def run_expiry(self) -> None:
        """Withdraw claims at their expiry; while the store cannot be written, retry with backoff."""
        backoff = 0.0
        while True:
            self.wake.clear()
            try:
                await self._expire_due()
                backoff = 0.0
            except StoreError as err:
                backoff = min(max(backoff * 2, 1.0), STORE_RETRY_MAX)
                log.error(kv("expiry-deferred", error=err.message, retry_in=backoff))
            except Exception:  # noqa: BLE001 - the loop must outlive one bad round
                log.exception("expiry failed; retrying next round")
                backoff = 1.0
            if backoff:
                # a store that failed is not tried faster than this, unless a write succeeded since (wake)
                self.expiry_wait_until = math.inf
                try:
                    await asyncio.wait_for(self.wake.wait(), backoff)
                except TimeoutError:
                    pass
                continue
            nxt = self.store.next_expiry()
            wait = 60.0 if nxt is None else min(max(nxt - self.clock(), 0.0), 60.0)
            self.expiry_wait_until = self.clock() + wait
            try:
                await asyncio.wait_for(self.wake.wait(), wait)
            except TimeoutError:
                pass

    async def _expire_due(self) -> None:
        due = {c.prefix for c in self.store.due(self.clock())}
        if not due:
            return
        async with self._locked(due):
            expired = [c for c in self.store.due(self.clock()) if c.prefix in due]
            self.store.remove_claims(expired, "expire")
            for claim in expired:
                log.info(kv("expire", prefix=claim.prefix, jail=claim.jail))
            self.stats.count("expire", "", len(expired))
            await self._apply(sorted({c.prefix for c in expired if not self.store.is_wanted(c.prefix)}))

    async def run_maintenance(self) -> None:
        """Retry pending routes often; check every backend for drift now and then; try a store that
        failed a write again (with backoff), so it heals with no request needed."""
        next_reconcile = self.clock() + self.config.daemon.reconcile_interval
        probe_at, backoff = 0.0, 0.0
        while True:
            await asyncio.sleep(self.config.daemon.retry_interval)
            if self.store.health.writable:
                backoff = 0.0
            elif self.clock() >= probe_at:
                try:
                    self.store.probe()
                    self.wake.set()  # expiries that waited for the store run now
                except StoreError:
                    backoff = min(max(backoff * 2, 1.0), STORE_PROBE_MAX)
                    probe_at = self.clock() + backoff
            if self.clock() >= next_reconcile:
                await _survive("reconcile", self.reconcile("periodic"))
                await _survive("prune", self._prune_events())
                next_reconcile = self.clock() + self.config.daemon.reconcile_interval
            else:
                await _survive("retry", self._retry_pending())

    async def _prune_events(self) -> None:
        daemon = self.config.daemon
        while self.store.prune_events(self.clock(), daemon.events_max_age, daemon.events_max_rows,
                                      PRUNE_BATCH) == PRUNE_BATCH:
            await asyncio.sleep(0)  # other requests go between rounds

    async def reconcile(self, why: str) -> ReconcileReport:
        if self.read_host is not None:
            self.host = await self.read_host()
        withdrawn = await self._enforce_guards()
        drift = {backend.name: await self._reconcile_backend(backend) for backend in self.backends}
        self.last_reconcile = ReconcileReport(why, self.clock(), tuple(withdrawn), drift)
        return self.last_reconcile

    # internals

    def _accept(self, text: str) -> Prefix:
        verdict = check_text(text, self.config.guards, self.host)
        if isinstance(verdict, Refused):
            log.warning(kv("refuse", input=text[:64], guard=verdict.guard, reason=verdict.reason))
            self.stats.count("refuse", verdict.guard)
            self._note("refuse", canonical_text(text), str(verdict))
            raise RefusedError(str(verdict), hint=_hint(verdict))
        return verdict.prefix

    def _widen(self, banned: Prefix, jail: str) -> Widening:
        widening = widen(banned, jail, self.config.aggregation, self.config.guards, self.host)
        if widening.refused is not None:
            log.warning(kv("widen-refused", prefix=widening.tried, address=banned.address, jail=jail,
                           guard=widening.refused.guard, reason=widening.refused.reason))
            self._note("widen-refused", str(widening.tried),
                       f"{banned.address} ({jail}) stays a host ban: {widening.refused}")
        return widening

    def _widened(self, prefix: Prefix) -> list[Claim]:
        """The claims on wider prefixes made for this banned address."""
        return self.store.claims_for_address(prefix.address) if prefix.is_host else []

    def _recent_bans(self) -> RecentBans:
        """The bans of the escalation window, from the store: a restart forgets none."""
        policy = self.config.aggregation.escalation
        recent = RecentBans(policy)
        if policy.enabled:
            now = self.clock()
            for claim in self.store.claims_since(now - policy.window):
                if claim.origin != ESCALATED:
                    recent.add(Member(claim.prefix, claim.address or _text(claim.prefix), claim.jail, claim.created),
                               now)
        return recent

    async def _escalate(self, member: Member, now: float) -> Prefix | None:
        """Blackhole the covering prefix once enough members are banned in the window.

        The member's own ban is done whatever happens here: a refusal, a limit or a store
        that cannot be written is logged and kept in the events, never an error to the client."""
        policy = self.config.aggregation.escalation
        if not policy.enabled:
            return None
        if self.recent_bans.policy != policy:  # the config was reloaded
            self.recent_bans = self._recent_bans()
        self.recent_bans.add(member, now)
        cover = escalation_cover(member.prefix, policy)
        if cover is None or self.store.is_wanted(cover):
            return None  # already blackholed: nothing to decide (and a storm inside it costs nothing more)
        recent = [m for m in self.recent_bans.near(member.prefix) if self.store.is_wanted(m.prefix)]
        decision = decide(member, recent, policy, self.config.guards, self.host, now)
        if decision is None:
            return None
        cover, members = decision.cover, " ".join(f"{m.address}({m.jail})" for m in decision.members)
        if decision.refused is not None:
            log.warning(kv("escalate-refused", prefix=cover, members=len(decision.members),
                           guard=decision.refused.guard, reason=decision.refused.reason))
            self._note("escalate-refused", str(cover), f"{decision.refused}; members stay: {members}")
            return None
        claim = Claim(cover, ESCALATION_OWNER, reason(decision, policy), now, now + policy.bantime, "", ESCALATED)
        outcome = (await self._commit([claim], now))[0]
        if isinstance(outcome, F2bBgpError):
            self._note("escalate-refused", str(cover), f"{outcome.message}; members stay: {members}")
            return None
        self._note("escalate", str(cover), f"{len(decision.members)} bans: {members}")
        log.info(kv("escalate", prefix=cover, members=len(decision.members), result=self.book.state(cover).value))
        return cover

    def _note(self, event: str, prefix: str, detail: str) -> None:
        """An event that changes nothing: a store that cannot take it must not fail the request."""
        try:
            self.store.event(event, prefix, detail=detail)
        except StoreError as err:
            log.error(kv("event-lost", event=event, prefix=prefix, error=err.message))

    def _parse(self, text: str) -> Prefix:
        verdict = check_text(text, self.config.guards, self.host)
        if isinstance(verdict, Accepted):
            return verdict.prefix
        if verdict.guard == "input":
            raise RefusedError(str(verdict))
        return Prefix.parse(canonical_text(text))  # refused by a policy guard: still a valid prefix

    def _check_capacity(self, now: float, batched: int = 0) -> None:
        """For one more new prefix, after `batched` new ones of the same batch not yet recorded."""
        self._trim_rate(now)
        refused = check_capacity(self.store.count_wanted() + batched, len(self.recent) + batched, self.config.guards)
        if refused is not None:
            log.error(kv("limit", guard=refused.guard, reason=refused.reason))
            self.stats.count("refuse", refused.guard)
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

    def _view(self, prefix: Prefix, claims: list[Claim], jail: str | None = None) -> BanView:
        ends = [c.expires for c in claims]
        return BanView(
            prefix=prefix,
            state=self.book.state(prefix),
            expires=None if None in ends else max(e for e in ends if e is not None),
            owners=tuple(Owner(c.jail, c.reason, c.created, c.expires, c.address, c.origin)
                         for c in claims if jail in (None, c.jail)),
            backends={b.name: self.book.backend_state(b.name, prefix) for b in self.backends},
        )

    def _locked(self, prefixes: Iterable[Prefix]) -> _PrefixLocks:
        return _PrefixLocks(self.locks, sorted(set(prefixes)))

    async def _apply(self, prefixes: Sequence[Prefix], backends: Sequence[Backend] | None = None) -> None:
        """Bring the backends to the store for these prefixes; the caller holds their locks."""
        if not prefixes:
            return
        add = [p for p in prefixes if self.store.is_wanted(p)]
        remove = [p for p in prefixes if not self.store.is_wanted(p)]
        await asyncio.gather(*(self._push(b, add, remove) for b in backends or self.backends))
        self.book.forget(remove)

    async def _push(self, backend: Backend, add: list[Prefix], remove: list[Prefix]) -> None:
        if add:
            started = time.monotonic()
            try:
                failures = await backend.announce(add)
            except BackendUnavailable as err:
                failures = dict.fromkeys(add, str(err))
            if len(failures) < len(add):
                self.stats.acknowledged(backend.name, time.monotonic() - started)
            self.book.acknowledged(backend.name, (p for p in add if p not in failures))
            for prefix, error in failures.items():
                self.book.mark_pending([prefix], backend.name, error)
            if failures:
                log.warning(kv("announce", backend=backend.name, pending=len(failures),
                               error=next(iter(failures.values()))))
        if remove:
            try:
                failures = await backend.withdraw(remove)
            except BackendUnavailable as err:
                failures = dict.fromkeys(remove, str(err))
            for prefix, error in failures.items():
                log.warning(kv("withdraw-failed", backend=backend.name, prefix=prefix, error=error,
                               then="reconcile retries"))

    async def _retry_pending(self) -> None:
        for backend in self.backends:
            if not backend.ready:
                continue
            # read with no await in between: a locked prefix has a request in flight, which owns it
            stuck = [p for p in self.book.pending[backend.name] if p not in self.locks]
            if stuck:
                async with self._locked(stuck):
                    await self._apply([p for p in stuck if self.store.is_wanted(p)], [backend])

    async def _reconcile_backend(self, backend: Backend) -> Drift:
        actual = await backend.installed()
        if actual is None:
            return Drift(checked=False)
        busy = set(self.locks)  # an operation in flight owns these: neither counted nor touched
        wanted = self.store.wanted()
        self.book.acknowledged(backend.name, (p for p in actual if p in wanted and p not in busy))
        missing = [p for p in wanted if p not in actual and p not in busy]
        stale = [p for p in actual if p not in wanted and p not in busy]
        if self.keep_unaccounted:
            stale = self._not_kept(backend, stale)
        if not missing and not stale:
            return Drift(checked=True)
        async with self._locked(missing + stale):
            await self._apply(missing + stale, [backend])
        repaired = not any(p in self.book.pending[backend.name] for p in missing)
        log.warning(kv("drift", backend=backend.name, missing=len(missing), stale=len(stale), repaired=repaired))
        return Drift(True, len(missing), len(stale), repaired)

    def _not_kept(self, backend: Backend, stale: list[Prefix]) -> list[Prefix]:
        """With a new store, the routes a backend holds when it first reports are kept (never withdrawn on a
        guess), adopted or discarded, as the start was told. The store counts as settled only once every
        backend has reported and nothing is kept: until then a restart keeps them too."""
        if backend.name not in self.unaccounted:
            choice = self.unaccounted_choice
            if choice is Unaccounted.ADOPT:
                self._adopt(backend, stale)
            self.unaccounted[backend.name] = set(stale) if choice is Unaccounted.REFUSE else set()
            if stale:
                action = {Unaccounted.REFUSE: "kept: the store is new; restart with 'serve --adopt' or 'serve --discard'",
                          Unaccounted.ADOPT: "adopted", Unaccounted.DISCARD: "discarded"}[choice]
                log.log(logging.ERROR if choice is Unaccounted.REFUSE else logging.WARNING,
                        kv("unaccounted", backend=backend.name, routes=len(stale), action=action))
            if len(self.unaccounted) == len(self.backends) and not any(self.unaccounted.values()):
                self.store.mark_settled()
                self.keep_unaccounted = False
        return [p for p in stale if p not in self.unaccounted[backend.name] and not self.store.is_wanted(p)]

    def _adopt(self, backend: Backend, found: list[Prefix]) -> None:
        now = self.clock()
        expires = now + self.config.daemon.default_bantime
        for prefix in sorted(found):
            self.store.upsert_claim(Claim(prefix, "adopted", f"found in backend {backend.name}", now, expires))
        self.book.mark_pending(found)  # until each other backend has them too
        self.book.acknowledged(backend.name, found)

    def _claims_of(self, prefix: Prefix) -> list[Claim]:
        return self.store.claims(prefix=prefix)

    def _replayer(self, backend: Backend) -> Callable[[], Awaitable[None]]:
        async def replay() -> None:
            log.info(kv("replay", backend=backend.name))
            await self._reconcile_backend(backend)

        return replay

    def _loser(self, backend: Backend) -> Callable[[str], None]:
        def lost(why: str) -> None:
            self.book.mark_pending(self.store.wanted(), backend.name, f"{backend.name}: {why}")
            log.warning(kv("lost", backend=backend.name, pending=self.store.count_wanted(), why=why))

        return lost

    async def _enforce_guards(self) -> list[Prefix]:
        """Withdraw stored bans that the current config refuses (fail closed after a config change).

        Every stored prefix passed the guards when it was banned: they are checked again only
        when the guards or the host's addresses changed since the last full check, so a start
        with a million bans does not re-run a million checks."""
        refused = []
        fingerprint = _fingerprint(self.config.guards, self.host)
        checked = self.store.meta(GUARDS_CHECKED) == fingerprint
        if not checked:
            for prefix in list(self.store.wanted()):
                verdict = check_prefix(prefix, self.config.guards, self.host)
                if isinstance(verdict, Refused):
                    refused.append((prefix, str(verdict)))
        over = self.store.count_wanted() - len(refused) - self.config.guards.max_routes
        if over > 0:
            gone = {p for p, _ in refused}
            newest = sorted({c.prefix: c.created for c in self.store.claims() if c.prefix not in gone}.items(),
                            key=lambda kv_: -kv_[1])[:over]
            refused += [(p, "over max_routes") for p, _ in newest]
        if refused:
            async with self._locked(p for p, _ in refused):
                for prefix, reason in refused:
                    self.store.remove_prefix(prefix, event="guard")
                    log.warning(kv("guard-withdraw", prefix=prefix, reason=reason))
                await self._apply([p for p, _ in refused])
        if not checked:  # no write when nothing changed: a read-only store must not stop the drift check
            self.store.set_meta(GUARDS_CHECKED, fingerprint)
        return [p for p, _ in refused]


class _Lock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class _PrefixLocks:
    """Hold one lock per prefix, taken in sorted order (no deadlock); unused locks are dropped."""

    def __init__(self, locks: dict[Prefix, _Lock], prefixes: list[Prefix]) -> None:
        self.locks, self.prefixes = locks, prefixes

    async def __aenter__(self) -> None:
        for prefix in self.prefixes:
            entry = self.locks.setdefault(prefix, _Lock())
            entry.users += 1
            await entry.lock.acquire()

    async def __aexit__(self, *exc: object) -> None:
        for prefix in self.prefixes:
            entry = self.locks[prefix]
            entry.lock.release()
            entry.users -= 1
            if entry.users == 0:
                del self.locks[prefix]


async def _survive(what: str, work: Awaitable[object]) -> None:
    """Background work logs an unexpected failure and tries again next round instead of dying."""
    try:
        await work
    except StoreError as err:
        log.error(kv(what + "-deferred", error=err.message))
    except Exception:  # noqa: BLE001 - the loop must outlive one bad round
        log.exception("%s failed; retrying next round", what)


def _check_owner(name: str) -> None:
    """Every writer (the API, the fail2ban queue) comes through here: no claim under a name that could
    forge a log field, break a table or hide in a Unicode look-alike."""
    problem = name_problem(name)
    if problem:
        raise RequestError(f"owner name {shown(name)} {problem}")


def _log_bans(done: list[tuple[Claim, BanResult]]) -> None:
    """A line per ban; a batch larger than LOG_EACH gets one summary line (`f2b-bgp events` has each ban)."""
    if len(done) <= LOG_EACH:
        for claim, result in done:
            log.info(kv("ban", prefix=claim.prefix, jail=claim.jail, expires=claim.expires or 0, new=result.new,
                        result=result.state.value, **({"widened_from": claim.address} if claim.address else {})))
        return
    states = Counter(result.state.value for _, result in done)
    log.info(kv("ban-batch", bans=len(done), new=sum(result.new for _, result in done),
                jails=",".join(sorted({claim.jail for claim, _ in done})), first=done[0][0].prefix,
                last=done[-1][0].prefix, **{f"result_{state}": n for state, n in sorted(states.items())}))


def _fingerprint(policy: GuardPolicy, host: HostFacts) -> str:
    """Changes whenever a guard could decide otherwise: the policy or the host's addresses."""
    text = repr((policy, sorted(str(a) for a in host.addresses)))
    return hashlib.sha256(text.encode()).hexdigest()


def _text(prefix: Prefix) -> str:
    """An address as written, a prefix with its length."""
    return prefix.address if prefix.is_host else str(prefix)


def _label(claim: Claim, asked: Prefix) -> str:
    """An owner as the operator reads it: the jail, and the route or the address when not obvious."""
    if claim.prefix != asked:
        return f"{claim.jail} on {claim.prefix}"
    return f"{claim.jail} for {claim.address}" if claim.address else claim.jail


def _hint(verdict: Refused) -> str:
    return {
        "protected": "the address is inside guards.protected",
        "length": "only host routes are accepted unless guards.min_length_ipv4/ipv6 allow shorter",
        "special": "special-purpose range; list it in guards.allow_special to allow it",
    }.get(verdict.guard, "")
