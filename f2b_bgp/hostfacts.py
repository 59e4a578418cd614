"""Read the host's own addresses, for the guard that keeps them out of any blackhole."""

from __future__ import annotations

from netaddr import IPNetwork
from pyroute2 import AsyncIPRoute

from .guards import HostFacts


async def read_host_facts() -> HostFacts:
    addresses: list[IPNetwork] = []
    async with AsyncIPRoute() as ipr:
        async for msg in await ipr.addr("dump"):
            addresses.append(IPNetwork(f"{msg.get('address')}/{msg['prefixlen']}"))
    return HostFacts(addresses=tuple(sorted(set(addresses))))
