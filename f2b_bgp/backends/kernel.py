"""Blackhole routes in the kernel through pyroute2, marked with our route protocol number."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ..config import KernelConfig
from ..model import BackendStatus, Prefix
from .base import Backend, BackendUnavailable, Failures

log = logging.getLogger(__name__)


class KernelBackend(Backend):
    name = "kernel"

    def __init__(self, config: KernelConfig) -> None:
        super().__init__()
        self.config = config
        self.ipr: AsyncIPRoute | None = None
        self.last_error = ""

    async def start(self) -> None:
        self.ipr = AsyncIPRoute()
        await self.ipr.setup_endpoint()

    async def stop(self) -> None:
        if self.ipr is not None:
            self.ipr.close()
            self.ipr = None

    @property
    def ready(self) -> bool:
        return self.ipr is not None

    def _route(self, prefix: Prefix) -> dict[str, Any]:
        spec: dict[str, Any] = {"dst": str(prefix), "proto": self.config.protocol, "table": self.config.table}
        if self.config.metric:
            spec["priority"] = self.config.metric
        return spec

    async def announce(self, prefixes: Sequence[Prefix]) -> Failures:
        return await self._each("replace", prefixes, type=self.config.route_type.value)

    async def withdraw(self, prefixes: Sequence[Prefix]) -> Failures:
        return await self._each("del", prefixes)

    async def _each(self, command: str, prefixes: Sequence[Prefix], **extra: Any) -> Failures:
        if self.ipr is None:
            raise BackendUnavailable("kernel backend not started")
        failures: Failures = {}
        for prefix in prefixes:
            try:
                await self.ipr.route(command, **self._route(prefix), **extra)
            except NetlinkError as err:
                if command == "del" and err.code == errno.ESRCH:
                    continue  # already absent
                failures[prefix] = f"netlink {command}: {err}"
                self.last_error = failures[prefix]
                log.warning("kernel %s prefix=%s error=%r", command, prefix, str(err))
        return failures

    async def installed(self) -> set[Prefix] | None:
        if self.ipr is None:
            return None
        found: set[Prefix] = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            dump = await self.ipr.route("dump", family=family, proto=self.config.protocol, table=self.config.table)
            async for route in dump:
                found.add(Prefix.parse(f"{route.get('dst')}/{route['dst_len']}"))
        return found

    def status(self) -> BackendStatus:
        settings = {"table": self.config.table, "protocol": self.config.protocol,
                    "route_type": self.config.route_type.value}
        return BackendStatus(ready=self.ready, last_error=self.last_error, settings=settings)
