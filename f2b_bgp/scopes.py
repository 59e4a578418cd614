"""What an API client's token lets it do, on top of the central's own guards.

A token's claims are recorded as NAME/JAIL; with own_claims_only it sees,
unbans and withdraws only those. It may call only its operations, never touch
its forbidden prefixes, hold at most max_claims active claims and make at
most max_rate new claims a minute. Each check fails closed, before the
service changes anything.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from netaddr import IPNetwork

from .address import canonical_text, to_network
from .api import execute
from .errors import LimitError, RefusedError
from .guards import Accepted, check_text
from .model import BanResult, BanView, Listing, Prefix, ShowResult, UnbanResult, WithdrawResult
from .service import Service
from .tokens import Token

RATE_WINDOW = 60.0


class Unauthorized(RefusedError):
    """No token, or one the config does not hold (never issued, or revoked)."""


class OutOfScope(RefusedError):
    """A valid token asking for what its scope does not allow."""


def owns(token: Token, jail: str) -> bool:
    return jail.startswith(token.name + "/")


class Scopes:
    """Per-token state between requests: recent new claims (rate) and claims being made (quota)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.recent: dict[str, deque[float]] = defaultdict(deque)
        self.in_flight: dict[str, int] = defaultdict(int)

    async def run(self, token: Token, req: dict[str, Any], service: Service) -> object:
        op = req.get("op")
        if op not in token.operations:
            raise OutOfScope(f"token {token.name} may not call {str(op)[:32]!r}",
                             hint=f"its operations: {', '.join(token.operations)}")
        req = self._own_jail(token, req)
        prefix = _prefix(req, service)
        if prefix is not None:
            _check_forbidden(token, prefix)
        jail = req.get("jail")
        if op == "ban" and prefix is not None and isinstance(jail, str) and not service.store.has_claim(prefix, jail):
            return await self._new_claim(token, req, service)
        if op == "withdraw" and token.own_claims_only and prefix is not None:
            return await _withdraw_own(token, prefix, service)
        return _narrow(token, await execute(service, req))

    def _own_jail(self, token: Token, req: dict[str, Any]) -> dict[str, Any]:
        """ban and unban act on NAME/JAIL; an own-claims token's list --jail looks among them."""
        op = req.get("op")
        jail = req.get("jail", "cli" if op in ("ban", "unban") else None)
        if op not in ("ban", "unban", "list") or not isinstance(jail, str):
            return req  # no jail, or the handler says what is wrong with it
        if op == "list" and not token.own_claims_only:
            return req  # an operator lists any owner's claims by their full name
        if owns(token, jail) or ("/" in jail and not token.own_claims_only):
            return req
        if "/" in jail:
            raise OutOfScope(f"token {token.name} may act only on its own claims ({token.name}/...), "
                             f"not {jail[:64]!r}")
        return {**req, "jail": f"{token.name}/{jail}"}

    async def _new_claim(self, token: Token, req: dict[str, Any], service: Service) -> object:
        now = self.clock()
        recent = self.recent[token.name]
        while recent and recent[0] <= now - RATE_WINDOW:
            recent.popleft()
        if len(recent) + self.in_flight[token.name] >= token.max_rate:
            raise LimitError(f"token {token.name}: {token.max_rate} new claims in the last minute",
                             hint="raise max_rate of this token in api.tokens if this is expected")
        if service.store.count_owned(token.name) + self.in_flight[token.name] >= token.max_claims:
            raise LimitError(f"token {token.name}: quota of {token.max_claims} active claims reached",
                             hint="raise max_claims of this token in api.tokens, or unban some")
        self.in_flight[token.name] += 1
        try:
            result = await execute(service, req)
        finally:
            self.in_flight[token.name] -= 1
        if isinstance(result, BanResult) and result.new:
            recent.append(now)
        return result


def _prefix(req: dict[str, Any], service: Service) -> Prefix | None:
    """The prefix the request names, also when a guard refuses it; None when it is not a prefix."""
    text = req.get("prefix")
    if not isinstance(text, str):
        return None
    verdict = check_text(text, service.config.guards, service.host)
    if isinstance(verdict, Accepted):
        return verdict.prefix
    return None if verdict.guard == "input" else Prefix.parse(canonical_text(text))


def _check_forbidden(token: Token, prefix: Prefix) -> None:
    network = to_network(prefix)
    for text in token.forbidden:
        forbidden = IPNetwork(text)
        if forbidden.version == network.version and (network in forbidden or forbidden in network):
            raise OutOfScope(f"token {token.name} may not touch {text}: {prefix} is inside it or holds it")


async def _withdraw_own(token: Token, prefix: Prefix, service: Service) -> WithdrawResult:
    """Withdraw for a client that sees only its own claims: every one of them on PREFIX, and those
    made for the address PREFIX on a wider prefix (a widened ban), no other."""
    removed = []
    widened = service.store.claims_for_address(prefix.address) if prefix.is_host else []
    for claim in service.store.claims(prefix=prefix) + widened:
        if owns(token, claim.jail):
            # a widened claim is its jail's claim for the banned address: unban removes it by that address
            result: UnbanResult = await service.unban(claim.address or str(prefix), claim.jail)
            if result.removed:
                removed.append(claim.jail)
    return WithdrawResult(prefix, tuple(removed), tuple(service.store.covering(prefix)))


def _narrow(token: Token, result: object) -> object:
    """What an own-claims client is shown of list and show: its own owners only."""
    if not token.own_claims_only:
        return result
    if isinstance(result, Listing):
        return replace(result, bans=tuple(v for view in result.bans if (v := _own_view(token, view))))
    if isinstance(result, ShowResult):
        return replace(result, bans=tuple(v for view in result.bans if (v := _own_view(token, view))))
    return result


def _own_view(token: Token, view: BanView) -> BanView | None:
    owners = tuple(o for o in view.owners if owns(token, o.jail))
    return replace(view, owners=owners) if owners else None
