"""The HTTPS API: the local API's operations as JSON over HTTP, for clients holding a token.

`GET /v1/{op}` for what only reads (ping, list, show, status; fields as query
parameters), `POST /v1/{op}` with a JSON object for the rest. The request
object, its validation, the service call and the answer are the Unix socket's
(api.execute, api.answer, api.error_answer); this module adds TLS, the bearer
token, the token's scope, the HTTP status of each exit code and the audit.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from typing import Any

from aiohttp import web

from .api import HANDLERS, INTERNAL_ERROR, MAX_LINE, answer, decode_object, error_answer
from .config import ApiConfig, HttpsConfig
from .errors import ConfigError, ExitCode, F2bBgpError, RequestError, StoreError
from .logfmt import kv
from .metrics import Render, metrics_response
from .model import BanResult, RouteState
from .names import text_problem
from .scopes import Scopes, Unauthorized
from .service import Service
from .tokens import Token, authenticate

log = logging.getLogger(__name__)

READ_OPS = frozenset({"ping", "list", "show", "status", "events"})
NUMERIC_QUERY = frozenset({"limit", "since"})  # page sizes, events' start time
NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?", re.ASCII)
# docs/contracts.md "HTTP status per exit code"; a ban that is stored but pending answers 202
HTTP_STATUS = {
    ExitCode.OK: 200,
    ExitCode.ERROR: 500,
    ExitCode.USAGE: 400,
    ExitCode.CONFIG: 500,
    ExitCode.REFUSED: 403,
    ExitCode.UNAVAILABLE: 503,
    ExitCode.PENDING: 202,
    ExitCode.LIMIT: 429,
    ExitCode.STORE: 507,
    ExitCode.INTERRUPTED: 503,
}
UNAUTHORIZED = 401  # a REFUSED answer for a missing, unknown or revoked token
NOT_FOUND = 404  # a USAGE answer for an unknown op
WRONG_METHOD = 405  # a USAGE answer for GET of a changing op, or POST of a reading one


def tls_context(https: HttpsConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(https.certificate), str(https.key))
        if https.client_ca is not None:
            ctx.load_verify_locations(cafile=str(https.client_ca))
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as err:
        raise ConfigError([f"api.https: cannot load certificate, key or client_ca: {err}"]) from err
    return ctx


class HttpsApi:
    """Serves /v1/{op} (and /metrics when given its renderer) on every api.https.listen address."""

    def __init__(self, service: Service, metrics: Render | None = None) -> None:
        self.service = service
        self.scopes = Scopes()
        self.metrics = metrics
        self.app = web.Application(client_max_size=MAX_LINE)
        self.app.router.add_route("*", "/v1/{op}", self._handle)
        if metrics is not None:
            self.app.router.add_get("/metrics", self._metrics)
        self.runner: web.AppRunner | None = None

    @property
    def config(self) -> ApiConfig:
        return self.service.config.api  # read per request: a reload (SIGHUP) revokes a token at once

    async def start(self) -> None:
        https = self.config.https
        ctx = tls_context(https)
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        for listen in https.listen:
            await web.TCPSite(self.runner, listen.host, listen.port, ssl_context=ctx, backlog=512).start()
        log.info(kv("https-api", listen=",".join(str(x) for x in https.listen), mutual_tls=https.client_ca is not None,
                    tokens=len(self.config.tokens)))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _token(self, request: web.Request) -> Token:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        token = authenticate(self.config.tokens, secret.strip()) if scheme.lower() == "bearer" else None
        if token is None:
            raise Unauthorized("no valid token: send 'Authorization: Bearer TOKEN'",
                               hint="a token is made with 'f2b-bgp token new NAME' and listed in api.tokens")
        return token

    async def _handle(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        token: Token | None = None
        fields: dict[str, Any] = {}
        status = 200
        try:
            token = self._token(request)
            fields = await _request_object(request, op)
            result = await self.scopes.run(token, fields, self.service)
            body = answer(result)
            if isinstance(result, BanResult) and result.state is RouteState.PENDING:
                status = HTTP_STATUS[ExitCode.PENDING]
        except F2bBgpError as err:
            body, status = error_answer(err), _status_of(err)
        except Exception:  # noqa: BLE001 - one bad request must not take the daemon down
            log.exception("https api internal error")
            body, status = INTERNAL_ERROR, 500
        self._audit(token, request.remote or "-", op, fields.get("prefix"), body)
        response = web.json_response(body, status=status, dumps=_dumps)
        if status == UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Bearer realm="f2b-bgp"'
        return response

    def _audit(self, token: Token | None, peer: str, op: str, prefix: object, body: dict[str, Any]) -> None:
        """One log line and one store event per request; hostile text only as quoted log values."""
        name = token.name if token else "-"
        shown = prefix[:64] if isinstance(prefix, str) and not text_problem(prefix[:64]) else ""
        result = body.get("state") if body["ok"] else body["code"]
        if not body["ok"]:
            self.service.stats.count("api-error", body["code"])
        log.info(kv("audit", token=name, peer=peer, op=op[:32], prefix=shown or "-", result=result or "ok"))
        known = op if op in HANDLERS else "unknown"
        try:
            self.service.store.event("api", shown, name, f"peer={peer} op={known} result={result or 'ok'}")
        except StoreError as err:
            log.error(kv("audit-lost", token=name, op=known, error=err.message))

    async def _metrics(self, request: web.Request) -> web.Response:
        """/metrics over HTTPS: any valid token may read them."""
        assert self.metrics is not None
        try:
            self._token(request)
        except Unauthorized as err:
            return web.json_response(error_answer(err), status=UNAUTHORIZED, dumps=_dumps)
        return metrics_response(self.metrics)


async def _request_object(request: web.Request, op: str) -> dict[str, Any]:
    if op not in HANDLERS:
        raise _Http(NOT_FOUND, f"unknown op {op[:32]!r}; known: {', '.join(sorted(HANDLERS))}")
    wanted = "GET" if op in READ_OPS else "POST"
    if request.method != wanted:
        raise _Http(WRONG_METHOD, f"{op} takes {wanted}, not {request.method[:8]}")
    if wanted == "GET":
        if len(request.query) != len(set(request.query)):
            raise RequestError("a query parameter given twice")
        fields: dict[str, Any] = {k: _query_value(k, v) for k, v in request.query.items()}
    else:
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise RequestError(f"request longer than {MAX_LINE} bytes") from None
        fields = decode_object(data) if data.strip() else {}
    return {**fields, "op": op}


def _query_value(name: str, text: str) -> Any:
    """Query parameters are text; the numeric ones become numbers for the handler to check."""
    if name in NUMERIC_QUERY and NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    return text


class _Http(RequestError):
    """A malformed request with its own HTTP status (unknown op, wrong method)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _status_of(err: F2bBgpError) -> int:
    if isinstance(err, _Http):
        return err.status
    if isinstance(err, Unauthorized):
        return UNAUTHORIZED
    return HTTP_STATUS[err.exit_code]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))

