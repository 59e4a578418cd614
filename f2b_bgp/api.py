"""The local API: JSON lines on a Unix socket. Every field read is validated.

The request objects, their validation and the answers are shared with the
HTTPS API (https_api.py): `execute` runs one request object, `answer` and
`error_answer` are the two shapes of a reply, both transports send them.

Bans, unbans and withdraws on one connection are handled concurrently (so a
client can stream many bans and the ExaBGP backend can batch them); every
other request runs alone, after the ones before it. Answers go out in request
order. A client that does not read its answers is slowed, then dropped: at most
MAX_IN_FLIGHT requests of one connection are in the daemon at a time, no new
request starts while its unread answers fill the write buffer (so a client
that sends `list` after `list` gets one computed, not hundreds), and an answer
that cannot be written within WRITE_TIMEOUT closes the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import __version__, unix_socket
from .errors import F2bBgpError, RequestError
from .logfmt import kv
from .model import Pong, SyncResult, to_wire
from .names import name_problem, text_problem
from .service import BanRequest, Service

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_IN_FLIGHT = 256  # per connection: reading pauses beyond it (backpressure)
WRITE_BUFFER = 256 * 1024
WRITE_TIMEOUT = 10.0  # a client that reads nothing for this long is dropped
MAX_BANTIME = 10 * 365 * 86400
MAX_PAGE = 2000  # prefixes per `list` answer: a page of 2,000 holds the loop ~0.1 s
MAX_EPOCH = 4102444800.0  # 2100-01-01: a start time past it is a typo or an attack
DEFAULT_EVENTS, MAX_EVENTS = 100, 1000  # rows per events request

Handler = Callable[[Service, dict[str, Any]], Awaitable[object]]


def _string(req: dict[str, Any], name: str, default: str | None = None, required: bool = False) -> str | None:
    value = req.get(name, default)
    if value is None:
        if required:
            raise RequestError(f"field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise RequestError(f"field {name!r} must be a string")
    problem = text_problem(value)
    if problem:
        raise RequestError(f"field {name!r} {problem}")
    return value


def _name(req: dict[str, Any], name: str, default: str | None) -> str | None:
    value = _string(req, name, default)
    if value is not None and (problem := name_problem(value)):
        raise RequestError(f"field {name!r} {problem}")
    return value


def _number(req: dict[str, Any], name: str, kind: type, low: float, high: float) -> Any:
    value = req.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"field {name!r} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f"field {name!r} must be a finite number")
    if not low <= value <= high:
        raise RequestError(f"field {name!r} must be between {low:g} and {high:g}")
    if kind is int and value != int(value):
        raise RequestError(f"field {name!r} must be a whole number")
    return kind(value)


async def _ban(service: Service, req: dict[str, Any]) -> object:
    bantime = _number(req, "bantime", int, -1, MAX_BANTIME)
    return await service.ban(BanRequest(
        prefix=_string(req, "prefix", required=True) or "",
        jail=_name(req, "jail", "cli") or "cli",
        bantime=bantime,
        reason=_string(req, "reason", "") or "",
        started=_number(req, "started", float, 0, MAX_EPOCH),
    ))


async def _unban(service: Service, req: dict[str, Any]) -> object:
    return await service.unban(_string(req, "prefix", required=True) or "", _name(req, "jail", "cli") or "cli")


async def _withdraw(service: Service, req: dict[str, Any]) -> object:
    return await service.withdraw(_string(req, "prefix", required=True) or "")


async def _flush(service: Service, req: dict[str, Any]) -> object:
    return await service.flush(_name(req, "jail", None))


async def _list(service: Service, req: dict[str, Any]) -> object:
    page = {"limit": limit} if (limit := _number(req, "limit", int, 1, MAX_PAGE)) else {}
    return service.listing(_name(req, "jail", None), _string(req, "after", "") or "", **page)


async def _show(service: Service, req: dict[str, Any]) -> object:
    return service.show(_string(req, "prefix", required=True) or "")


async def _sync(service: Service, req: dict[str, Any]) -> object:
    return SyncResult(await service.reconcile("sync"))


async def _status(service: Service, req: dict[str, Any]) -> object:
    return service.status()


async def _ping(service: Service, req: dict[str, Any]) -> object:
    return Pong(__version__)


async def _events(service: Service, req: dict[str, Any]) -> object:
    limit = _number(req, "limit", int, 1, MAX_EVENTS)
    return service.events(_number(req, "since", float, 0, MAX_EPOCH), _string(req, "prefix"),
                          _name(req, "jail", None), DEFAULT_EVENTS if limit is None else limit)


# They wait on the backends, not on the CPU: many in flight at once is what lets a storm batch.
CONCURRENT = frozenset({"ban", "unban", "withdraw", "ping"})

HANDLERS: dict[str, Handler] = {
    "ban": _ban, "unban": _unban, "withdraw": _withdraw, "flush": _flush, "list": _list,
    "show": _show, "sync": _sync, "status": _status, "ping": _ping, "events": _events,
}


def decode_object(data: bytes) -> dict[str, Any]:
    """A JSON object from hostile bytes; RequestError for anything else."""
    try:
        req = json.loads(data)
    except RecursionError:
        raise RequestError("request nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(f"not valid JSON: {str(err)[:80]}") from None
    if not isinstance(req, dict):
        raise RequestError("request must be a JSON object")
    return req


def handler_of(op: object) -> Handler:
    handler = HANDLERS.get(op) if isinstance(op, str) else None
    if handler is None:
        raise RequestError(f"unknown op {str(op)[:32]!r}; known: {', '.join(sorted(HANDLERS))}")
    return handler


async def execute(service: Service, req: dict[str, Any]) -> object:
    """Run one request object (its fields validated by its handler): the typed result, or an F2bBgpError."""
    return await handler_of(req.get("op"))(service, req)


async def handle_line(service: Service, line: bytes) -> dict[str, Any]:
    try:
        req = decode_object(line)
    except F2bBgpError as err:
        return error_answer(err)
    return await handle_request(service, req)


async def handle_request(service: Service, req: dict[str, Any]) -> dict[str, Any]:
    try:
        result = await execute(service, req)
    except F2bBgpError as err:
        return error_answer(err)
    except Exception:  # noqa: BLE001 - one bad request must not take the daemon down
        log.exception("api internal error")
        return INTERNAL_ERROR
    return answer(result)


INTERNAL_ERROR = {"ok": False, "code": "error", "error": "internal error, see the daemon log"}


def answer(result: object) -> dict[str, Any]:
    return {"ok": True, **to_wire(result)}


def error_answer(err: F2bBgpError) -> dict[str, Any]:
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
        writer.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        answers: asyncio.Queue[asyncio.Task[dict[str, Any]] | None] = asyncio.Queue(MAX_IN_FLIGHT)
        sender = asyncio.create_task(self._send(answers, writer))
        try:
            while not sender.done():
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError:
                    break
                except asyncio.LimitOverrunError:
                    await answers.put(_done(error_answer(RequestError(f"request longer than {MAX_LINE} bytes"))))
                    break
                await writer.drain()  # the client reads its answers, or no new work starts
                if writer.is_closing():
                    break  # dropped while we waited: what it sent last is not worked on
                try:
                    req = decode_object(line)
                except F2bBgpError as err:
                    await answers.put(_done(error_answer(err)))
                    continue
                task = asyncio.create_task(handle_request(self.service, req))
                await answers.put(task)
                if req.get("op") not in CONCURRENT:
                    await asyncio.wait([task])
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
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            except TimeoutError:
                log.warning(kv("api-client-dropped", why=f"read no answer for {WRITE_TIMEOUT:g} s"))
                writer.transport.abort()
                gone = True
            except ConnectionError:
                gone = True
        writer.close()


def _done(result: dict[str, Any]) -> asyncio.Task[dict[str, Any]]:
    async def value() -> dict[str, Any]:
        return result

    return asyncio.create_task(value())
