"""The local API: JSON lines on a Unix socket. Every field read is validated.

The request objects, their validation and the answers are shared with the
HTTPS API (https_api.py): `execute` runs one request object, `answer` and
`error_answer` are the two shapes of a reply, both transports send them.

Bans, unbans and withdraws on one connection are handled concurrently (so a
client can stream many bans and the backends can batch them); bans that arrive
one after another in what one read returned go to the service as one batch
(one store transaction, one push per backend), each with its own answer. Every
other request runs alone, after the ones before it. Answers go out in request
order. A client that does not read its answers is slowed, then dropped: at most
MAX_IN_FLIGHT requests of one connection are in the daemon at a time (reading
resumes when half of them are answered), no new request starts while its
unread answers fill the write buffer (so a client that sends `list` after
`list` gets one computed, not hundreds), and answers that cannot be written
within WRITE_TIMEOUT close the connection.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
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
MAX_IN_FLIGHT = 1024  # per connection: reading pauses beyond it (backpressure)
BAN_BATCH = 256  # consecutive bans that go to the service together
READ_SIZE = 64 * 1024
WRITE_BUFFER = 256 * 1024
WRITE_TIMEOUT = 10.0  # a client that reads nothing for this long is dropped
MAX_BANTIME = 10 * 365 * 86400
MAX_PAGE = 2000  # prefixes per `list` answer: a page of 2,000 holds the loop ~0.1 s
MAX_EPOCH = 4102444800.0  # 2100-01-01: a start time past it is a typo or an attack
DEFAULT_EVENTS, MAX_EVENTS = 100, 1000  # rows per events request

_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per answer
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


def ban_request(req: dict[str, Any]) -> BanRequest:
    return BanRequest(
        prefix=_string(req, "prefix", required=True) or "",
        jail=_name(req, "jail", "cli") or "cli",
        bantime=_number(req, "bantime", int, -1, MAX_BANTIME),
        reason=_string(req, "reason", "") or "",
        started=_number(req, "started", float, 0, MAX_EPOCH),
    )


async def _ban(service: Service, req: dict[str, Any]) -> object:
    return await service.ban(ban_request(req))


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


async def handle_bans(service: Service, reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ban requests as one batch: the answers, in order, each as handle_request would give it."""
    answers: list[dict[str, Any]] = [INTERNAL_ERROR] * len(reqs)
    valid: list[tuple[int, BanRequest]] = []
    for i, req in enumerate(reqs):
        try:
            valid.append((i, ban_request(req)))
        except F2bBgpError as err:
            answers[i] = error_answer(err)
    try:
        outcomes = await service.ban_many([ban for _, ban in valid])
    except Exception:  # noqa: BLE001 - one bad batch must not take the daemon down
        log.exception("api internal error")
        return answers
    for (i, _), outcome in zip(valid, outcomes):
        answers[i] = error_answer(outcome) if isinstance(outcome, F2bBgpError) else answer(outcome)
    return answers


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
        answers: asyncio.Queue[Answers | None] = asyncio.Queue()
        flight = _Flight(MAX_IN_FLIGHT)
        sender = asyncio.create_task(self._send(answers, writer, flight))
        try:
            async for lines in _lines(reader):
                for work in _work(lines):
                    await flight.enter(work.size)
                    await writer.drain()  # the client reads its answers, or no new work starts
                    if sender.done() or writer.is_closing():
                        return  # dropped while we waited: what it sent last is not worked on
                    task = asyncio.create_task(work.run(self.service))
                    await answers.put(task)
                    if not work.concurrent:
                        await asyncio.wait([task])
        except _TooLong:
            await answers.put(_done([error_answer(RequestError(f"request longer than {MAX_LINE} bytes"))]))
        except ConnectionError:
            pass
        finally:
            await answers.put(None)
            await sender

    @staticmethod
    async def _send(answers: asyncio.Queue[Answers | None], writer: asyncio.StreamWriter, flight: _Flight) -> None:
        """Write answers in request order; after the client went away keep draining so no task is orphaned."""
        gone = False
        while (task := await answers.get()) is not None:
            out = await task
            flight.leave(len(out))
            if gone or writer.transport.is_closing():
                gone = True
                continue
            writer.write(b"".join(_ENCODER.encode(a).encode() + b"\n" for a in out))
            if writer.transport.get_write_buffer_size() <= WRITE_BUFFER:
                continue
            try:
                await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            except TimeoutError:
                log.warning(kv("api-client-dropped", why=f"read no answer for {WRITE_TIMEOUT:g} s"))
                writer.transport.abort()
                gone = True
            except ConnectionError:
                gone = True
        writer.close()


Answers = asyncio.Task[list[dict[str, Any]]]


class _TooLong(Exception):
    pass


async def _lines(reader: asyncio.StreamReader) -> AsyncIterator[list[bytes]]:
    """The complete lines each read brings (many at once from a client that pipelines)."""
    rest = b""
    while chunk := await reader.read(READ_SIZE):
        *lines, rest = (rest + chunk).split(b"\n")
        too_long = next((i for i, line in enumerate(lines) if len(line) > MAX_LINE), None)
        if too_long is not None:
            lines = lines[:too_long]  # the requests before it are still answered
        if lines:
            yield lines
        if too_long is not None or len(rest) > MAX_LINE:
            raise _TooLong


@dataclass
class _Work:
    """One request, or consecutive bans that go to the service as a batch."""

    run: Callable[[Service], Awaitable[list[dict[str, Any]]]]
    size: int
    concurrent: bool


def _work(lines: list[bytes]) -> Iterator[_Work]:
    bans: list[dict[str, Any]] = []
    for line in lines:
        try:
            req: dict[str, Any] | F2bBgpError = decode_object(line)
        except F2bBgpError as err:
            req = err
        is_ban = isinstance(req, dict) and req.get("op") == "ban"
        if bans and (not is_ban or len(bans) == BAN_BATCH):
            yield _bans(bans)
            bans = []
        if is_ban:
            bans.append(req)  # type: ignore[arg-type]  # a dict: is_ban
        else:
            yield _single(req)
    if bans:
        yield _bans(bans)


def _bans(reqs: list[dict[str, Any]]) -> _Work:
    return _Work(functools.partial(handle_bans, reqs=reqs), len(reqs), True)


def _single(req: dict[str, Any] | F2bBgpError) -> _Work:
    async def one(service: Service) -> list[dict[str, Any]]:
        return [error_answer(req) if isinstance(req, F2bBgpError) else await handle_request(service, req)]

    return _Work(one, 1, isinstance(req, F2bBgpError) or req.get("op") in CONCURRENT)


class _Flight:
    """Requests of one connection in the daemon: new ones wait while `most` are, until half are answered."""

    def __init__(self, most: int) -> None:
        self.most, self.count, self.room = most, 0, asyncio.Event()
        self.room.set()

    async def enter(self, size: int) -> None:
        while self.count >= self.most:
            self.room.clear()
            await self.room.wait()
        self.count += size

    def leave(self, size: int) -> None:
        self.count -= size
        if self.count <= self.most // 2:
            self.room.set()


def _done(result: list[dict[str, Any]]) -> Answers:
    async def value() -> list[dict[str, Any]]:
        return result

    return asyncio.create_task(value())
