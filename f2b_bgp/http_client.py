"""A client of a central's HTTPS API (stdlib only: http.client and ssl, like the Unix socket client).

Answers carry the same `ok`/`code`/`error`/`hint` as the local API, so errors
become the same exceptions and the CLI exits with the same codes.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

from .errors import ERRORS_BY_CODE, F2bBgpError, UnavailableError, RequestError

READ_OPS = frozenset({"ping", "list", "show", "status", "events"})  # GET; the rest POST (https_api.READ_OPS)


def read_token(path: str | Path) -> str:
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise RequestError(f"cannot read the token file {path}: {getattr(err, 'strerror', None) or err}") from err
    if not text or any(c.isspace() for c in text):
        raise RequestError(f"token file {path}: expected the one token 'f2b-bgp token new' printed")
    return text


def client_context(ca_file: str | None = None, certificate: str | None = None,
                   key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if certificate:
        ctx.load_cert_chain(certificate, key)
    return ctx


class HttpClient:
    def __init__(self, url: str, token: str, context: ssl.SSLContext, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise RequestError(f"--url must be https://HOST[:PORT], not {url[:80]!r}")
        self.url, self.host, self.port = url, parts.hostname, parts.port or 443
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.context, self.timeout = context, timeout
        self.conn: http.client.HTTPSConnection | None = None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request; the answer, or the error it carries raised as the local client does."""
        fields = {k: v for k, v in fields.items() if v is not None}
        if op in READ_OPS:
            query = urllib.parse.urlencode(fields)
            method, path, body = "GET", f"/v1/{op}" + (f"?{query}" if query else ""), None
        else:
            method, path, body = "POST", f"/v1/{op}", json.dumps(fields).encode()
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.context)
        try:
            self.conn.request(method, path, body=body, headers=self.headers)
            response = self.conn.getresponse()
            data = response.read()
        except ssl.SSLError as err:
            self.close()
            raise UnavailableError(f"TLS with {self.url} failed: {err.reason or err}",
                                   hint="check --ca-file (the CA that signed the central's certificate)") from err
        except (OSError, http.client.HTTPException) as err:
            self.close()
            raise UnavailableError(f"central {self.url} did not answer: {err}") from err
        try:
            answer = json.loads(data)
        except ValueError:
            raise UnavailableError(f"central {self.url}: HTTP {response.status}, not a JSON answer") from None
        if not isinstance(answer, dict) or not answer.get("ok"):
            answer = answer if isinstance(answer, dict) else {}
            cls = ERRORS_BY_CODE.get(answer.get("code", ""), F2bBgpError)
            raise cls(str(answer.get("error", f"HTTP {response.status}"))[:300], str(answer.get("hint", ""))[:300])
        return answer
