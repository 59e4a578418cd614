"""Apply the fail2ban queue (spool.py) through the service, as soon as lines arrive.

The daemon drains the queue once before it opens its API (so a request that
arrives over the socket never overtakes one queued before the start), then
polls it every POLL_INTERVAL seconds: an fstat and a stat of an idle file,
which measured as nothing next to the daemon's other work, and which also
sees a queue that was replaced, recreated or fixed after being refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from .errors import F2bBgpError
from .service import BanRequest, Service
from .spool import Entry, Spool

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.05


class SpoolRunner:
    def __init__(self, spool: Spool, service: Service, interval: float = POLL_INTERVAL) -> None:
        self.spool, self.service, self.interval = spool, service, interval

    async def drain(self) -> int:
        return await self.spool.drain(self.apply, self.refuse_line)

    async def run(self) -> None:
        while True:
            try:
                await self.drain()
            except Exception:  # noqa: BLE001 - the queue must outlive one bad round
                log.exception("queue drain failed; retrying")
            await asyncio.sleep(self.interval)

    async def apply(self, entry: Entry) -> str:
        """One entry through the service; the outcome goes to the event log and comes back in a word."""
        prefix = _canonical(entry.address)
        try:
            outcome = await self._call(entry)
        except F2bBgpError as err:
            # a guard refusal is already logged and recorded by the service; say it came from the queue
            log.warning("queue %s address=%s jail=%r refused=%s: %s", entry.op, entry.address, entry.jail,
                        err.code, err.message)
            outcome = f"refused ({err.code}): {err.message}"
        self.service.store.event("queue", prefix, entry.jail, f"{entry.op} {_detail(entry)} {outcome}")
        return outcome

    async def _call(self, entry: Entry) -> str:
        if entry.op == "ban":
            reason = f"fail2ban: {entry.failures} failures, restored={int(entry.restored)}, queued"
            result = await self.service.ban(BanRequest(entry.address, entry.jail, entry.bantime, reason, entry.started))
            return str(result["state"])
        if entry.op == "unban":
            result = await self.service.unban(entry.address, entry.jail)
            return "removed" if result["removed"] else "absent"
        result = await self.service.flush(entry.jail)
        return f"removed {result['removed']}"

    def refuse_line(self, excerpt: str, reason: str) -> None:
        self.service.store.event("queue-refused", "", "", f"{reason}: {excerpt!r}")


def _canonical(address: str) -> str:
    """The prefix as the store writes it (events are filtered by it); text that is no address stays as is."""
    try:
        return str(ipaddress.ip_network(address))
    except ValueError:
        return address[:64]


def _detail(entry: Entry) -> str:
    return f"started={entry.started:.0f} bantime={entry.bantime} ->" if entry.op == "ban" else "->"
