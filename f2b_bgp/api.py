"""The local API: JSON lines on a Unix socket. Every field read is validated.

Requests on one connection are handled concurrently (so a client can stream
many bans and the ExaBGP backend can batch them) and answered in order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import unix_socket
from .errors import F2bBgpError, RequestError
from .service import BanRequest, Service

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_STRING = 256
DEFAULT_EVENTS, MAX_EVENTS = 100, 1000  # rows per events request
MAX_IN_FLIGHT = 1024  # per connection: reading pauses beyond it (backpressure)

Handler = Callable[[Service, dict[str, Any]], Awaitable[dict[str, Any]]]


def _string(req: dict[str, Any], name: str, default: str | None = None, required: bool = False) -> str | None:
    value = req.get(name, default)
    if value is None:
        if required:
            raise RequestError(f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise RequestError(f"field {name!r} must be a string")
    if len(value.encode()) > MAX_STRING:
        raise RequestError(f"field {name!r} is longer than {MAX_STRING} bytes")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise RequestError(f"field {name!r} contains control characters")
    return value


def _jail(req: dict[str, Any], default: str | None) -> str | None:
    jail = _string(req, "jail", default)
    if jail is not None and not jail:
        raise RequestError("field 'jail' must not be empty")
    return jail


def _number(req: dict[str, Any], name: str, kind: type) -> Any:
    value = req.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(f"field {name!r} must be a number")
    if kind is int and value != int(value):
        raise RequestError(f"field {name!r} must be a whole number")
    return kind(value)


async def _ban(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    bantime = _number(req, "bantime", int)
    if bantime is not None and bantime < -1:
        raise RequestError("field 'bantime' must be -1 (permanent), 0 (default) or positive")
    started = _number(req, "started", float)
    if started is not None and started < 0:
        raise RequestError("field 'started' must be a positive epoch time")
    return await service.ban(BanRequest(
        prefix=_string(req, "prefix", required=True) or "",
        jail=_jail(req, "cli") or "cli",
        bantime=bantime,
        reason=_string(req, "reason", "") or "",
        started=started,
    ))


async def _unban(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    return await service.unban(_string(req, "prefix", required=True) or "", _jail(req, "cli") or "cli")


async def _withdraw(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    return await service.withdraw(_string(req, "prefix", required=True) or "")


async def _flush(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    return await service.flush(_jail(req, None))


async def _list(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    return service.listing(_jail(req, None))


async def _show(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    return service.show(_string(req, "prefix", required=True) or "")


async def _sync(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    report = await service.reconcile("sync")
    return {"report": report}


async def _status(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    return service.status()


async def _events(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    since = _number(req, "since", float)
    limit = _number(req, "limit", int)
    limit = DEFAULT_EVENTS if limit is None else limit
    if not 1 <= limit <= MAX_EVENTS:
        raise RequestError(f"field 'limit' must be 1..{MAX_EVENTS}")
    return service.events(since, _string(req, "prefix"), _jail(req, None), limit)


async def _ping(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    return {"version": service.status()["version"]}


HANDLERS: dict[str, Handler] = {
    "ban": _ban, "unban": _unban, "withdraw": _withdraw, "flush": _flush, "list": _list,
    "show": _show, "sync": _sync, "status": _status, "ping": _ping, "events": _events,
}


async def handle_line(service: Service, line: bytes) -> dict[str, Any]:
    try:
        req = json.loads(line)
        if not isinstance(req, dict):
            raise RequestError("request must be a JSON object")
        op = req.get("op")
        handler = HANDLERS.get(op) if isinstance(op, str) else None
        if handler is None:
            raise RequestError(f"unknown op {str(op)[:32]!r}; known: {', '.join(sorted(HANDLERS))}")
        return {"ok": True, **await handler(service, req)}
    except (ValueError, UnicodeDecodeError) as err:
        return _error(RequestError(f"not valid JSON: {str(err)[:80]}"))
    except F2bBgpError as err:
        return _error(err)
    except Exception:  # noqa: BLE001 - one bad request must not take the daemon down
        log.exception("api internal error")
        return {"ok": False, "code": "error", "error": "internal error, see the daemon log"}


def _error(err: F2bBgpError) -> dict[str, Any]:
    out = {"ok": False, "code": err.code, "error": err.message}
    if err.hint:
        out["hint"] = err.hint
    return out


class ApiServer:
    def __init__(self, service: Service, path: Path, mode: int, group: str) -> None:
        self.service, self.path, self.mode, self.group = service, path, mode, group
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self.server = await unix_socket.listen(self._client, self.path, self.mode, self.group, MAX_LINE)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        unix_socket.remove(self.path)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answers: asyncio.Queue[asyncio.Task[dict[str, Any]] | None] = asyncio.Queue(MAX_IN_FLIGHT)
        sender = asyncio.create_task(self._send(answers, writer))
        try:
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    await answers.put(_done(_error(RequestError(f"request longer than {MAX_LINE} bytes"))))
                    break
                await answers.put(asyncio.create_task(handle_line(self.service, line)))
        except ConnectionError:
            pass
        finally:
            await answers.put(None)
            await sender

    @staticmethod
    async def _send(answers: asyncio.Queue[asyncio.Task[dict[str, Any]] | None], writer: asyncio.StreamWriter) -> None:
        """Write answers in request order; after the client went away keep draining so no task is orphaned."""
        gone = False
        while (task := await answers.get()) is not None:
            answer = await task
            if gone:
                continue
            try:
                writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
                if answers.empty():
                    await writer.drain()
            except ConnectionError:
                gone = True
        writer.close()


def _done(result: dict[str, Any]) -> asyncio.Task[dict[str, Any]]:
    async def value() -> dict[str, Any]:
        return result

    return asyncio.create_task(value())
