"""An in-memory backend and a service around it, for unit tests of the logic."""

import asyncio
from collections.abc import Sequence
from pathlib import Path

from f2b_bgp.backends.base import Backend, BackendUnavailable, Failures
from f2b_bgp.config import parse_config
from f2b_bgp.guards import HostFacts
from f2b_bgp.model import Prefix
from f2b_bgp.service import Service
from f2b_bgp.store import Store


class MemoryBackend(Backend):
    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.routes: set[str] = set()
        self.failing: set[str] = set()
        self.available = True
        self.announced: list[str] = []  # every prefix asked for, in order, repeats included
        self.gate: asyncio.Event | None = None  # set: announce waits for it (an ack still on its way)

    async def announce(self, prefixes: Sequence[Prefix]) -> Failures:
        if not self.available:
            raise BackendUnavailable("not connected")
        self.announced += [str(p) for p in prefixes]
        if self.gate is not None:
            await self.gate.wait()
        self.routes |= {str(p) for p in prefixes if str(p) not in self.failing}
        return {p: "refused by test" for p in prefixes if str(p) in self.failing}

    async def withdraw(self, prefixes: Sequence[Prefix]) -> Failures:
        self.routes -= {str(p) for p in prefixes}
        return {}

    async def installed(self) -> set[Prefix] | None:
        return {Prefix.parse(p) for p in self.routes} if self.available else None


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, fresh: bool = False, aggregation: dict | None = None,
         **guards: object) -> tuple[Service, MemoryBackend, Clock]:
    raw = {"guards": {"protected": ["198.51.100.0/24"], "allow_special": ["203.0.113.0/24"], **guards},
           "daemon": {"default_bantime": 600, "max_bantime": 3600}, "aggregation": aggregation or {}}
    backend, clock = MemoryBackend(), Clock()
    if not fresh:
        used = Store(tmp_path / "s.db")  # a store a daemon has used
        used.mark_settled()
        used.close()
    service = Service(parse_config(raw), Store(tmp_path / "s.db"), [backend], HostFacts(), clock=clock)
    return service, backend, clock
