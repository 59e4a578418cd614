"""Which wanted prefixes each backend has not acknowledged yet, and why.

Kept in memory only: after a start every stored ban is pending until the
start-up reconcile has seen it in place, so nothing on disk can claim a route
is in place when it is not. Only the pending ones are held, so `status` costs
the same with ten bans or a million.
"""

from __future__ import annotations

from collections.abc import Iterable

from .model import BackendState, Prefix, RouteState

NOT_YET = "not acknowledged yet"


class RouteBook:
    def __init__(self, backends: Iterable[str]) -> None:
        self.pending: dict[str, dict[Prefix, str]] = {name: {} for name in backends}

    def mark_pending(self, prefixes: Iterable[Prefix], backend: str | None = None, error: str = NOT_YET) -> None:
        names = [backend] if backend is not None else list(self.pending)
        prefixes = list(prefixes)
        for name in names:
            self.pending[name].update(dict.fromkeys(prefixes, error))

    def acknowledged(self, backend: str, prefixes: Iterable[Prefix]) -> None:
        pending = self.pending[backend]
        for prefix in prefixes:
            pending.pop(prefix, None)

    def forget(self, prefixes: Iterable[Prefix]) -> None:
        """Withdrawn: no backend owes anything for these any more."""
        prefixes = list(prefixes)
        for pending in self.pending.values():
            for prefix in prefixes:
                pending.pop(prefix, None)

    def state(self, prefix: Prefix) -> RouteState:
        return RouteState.PENDING if any(prefix in p for p in self.pending.values()) else RouteState.ACTIVE

    def backend_state(self, backend: str, prefix: Prefix) -> BackendState:
        error = self.pending[backend].get(prefix)
        return BackendState(RouteState.ACTIVE) if error is None else BackendState(RouteState.PENDING, error)

    def count_pending(self) -> int:
        if len(self.pending) == 1:
            return len(next(iter(self.pending.values())))
        return len(set().union(*self.pending.values()))
