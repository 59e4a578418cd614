"""The contract every backend keeps with the service."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence

from ..model import BackendStatus, Claim, Prefix

# prefix -> one-line error, for the prefixes a backend did NOT apply
Failures = dict[Prefix, str]


class BackendUnavailable(Exception):
    """The backend cannot take commands now (e.g. ExaBGP's bridge is not connected)."""


class Backend(ABC):
    """Announce and withdraw host routes; report what is really in place.

    announce/withdraw return only when the backend acknowledged every prefix
    it did not list in the returned Failures. They raise BackendUnavailable when
    nothing could be sent. Both are idempotent: announcing what is in place and
    withdrawing what is absent succeed.
    """

    name: str = ""

    def __init__(self) -> None:
        # Set by the service: called when the backend lost its routes (an
        # ExaBGP restart) or came back, so the service replays the active set.
        self.on_reset: Callable[[], Awaitable[None]] | None = None
        # Set by the service: called when the backend may have lost its routes (ExaBGP's
        # bridge went away), so what was active shows as pending until the replay.
        self.on_lost: Callable[[str], None] | None = None
        # Set by the service: the claims (owner, reason, start, expiry) on a prefix now, for a
        # backend that forwards claims rather than routes (remote). Read it while announce runs:
        # the service holds the prefix's lock, so they are the claims being announced.
        self.claims_of: Callable[[Prefix], list[Claim]] | None = None

    async def start(self) -> None:
        """Acquire resources; called once before anything else."""

    async def stop(self) -> None:
        """Release resources. Must not withdraw routes."""

    @property
    def ready(self) -> bool:
        return True

    @abstractmethod
    async def announce(self, prefixes: Sequence[Prefix]) -> Failures: ...

    @abstractmethod
    async def withdraw(self, prefixes: Sequence[Prefix]) -> Failures: ...

    @abstractmethod
    async def installed(self) -> set[Prefix] | None:
        """What the backend holds now that is ours; None when it cannot tell."""

    def status(self) -> BackendStatus:
        """The service fills in `pending`."""
        return BackendStatus(ready=self.ready)
