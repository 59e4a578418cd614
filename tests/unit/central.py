"""A central service (memory backend) behind the real HTTPS API on loopback, with trustme certificates."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trustme

from f2b_bgp.config import ApiConfig, HttpsConfig, Listen
from f2b_bgp.http_client import HttpClient, client_context
from f2b_bgp.https_api import HttpsApi
from f2b_bgp.metrics import renderer
from f2b_bgp.service import Service
from f2b_bgp.tokens import OPERATIONS, Token, digest

from .memory import make

SECRETS = {"web1": "f2b_web1-test-secret", "web2": "f2b_web2-test-secret", "ops": "f2b_ops-test-secret"}


def tokens(**overrides: dict) -> tuple[Token, ...]:
    """web1 and web2 are edges (own claims only); ops may do everything."""
    base = {
        "web1": Token("web1", digest(SECRETS["web1"])),
        "web2": Token("web2", digest(SECRETS["web2"])),
        "ops": Token("ops", digest(SECRETS["ops"]), operations=OPERATIONS, own_claims_only=False),
    }
    return tuple(dataclasses.replace(t, **overrides.get(name, {})) for name, t in base.items())


class Pki:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = trustme.CA()
        self.other_ca = trustme.CA()
        server = self.ca.issue_cert("127.0.0.1", "localhost")
        self.cert, self.key = tmp_path / "server.pem", tmp_path / "server.key"
        server.cert_chain_pems[0].write_to_path(str(self.cert))
        server.private_key_pem.write_to_path(str(self.key))
        self.ca_file, self.other_ca_file = tmp_path / "ca.pem", tmp_path / "other-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.other_ca.cert_pem.write_to_path(str(self.other_ca_file))
        client = self.ca.issue_cert("web1.example")
        self.client_cert, self.client_key = tmp_path / "client.pem", tmp_path / "client.key"
        client.cert_chain_pems[0].write_to_path(str(self.client_cert))
        client.private_key_pem.write_to_path(str(self.client_key))

    def https(self, port: int = 0, client_ca: bool = False) -> HttpsConfig:
        return HttpsConfig((Listen("127.0.0.1", port),), self.cert, self.key, self.ca_file if client_ca else None)

    def context(self, wrong_ca: bool = False, client_cert: bool = False) -> ssl.SSLContext:
        return client_context(str(self.other_ca_file if wrong_ca else self.ca_file),
                              str(self.client_cert) if client_cert else None,
                              str(self.client_key) if client_cert else None)


def central_service(tmp_path: Path, pki: Pki, port: int = 0, client_ca: bool = False, **token_overrides: dict
                    ) -> Service:
    service, _, _ = make(tmp_path)
    service.config = dataclasses.replace(
        service.config, api=ApiConfig(pki.https(port, client_ca), (), tokens(**token_overrides)))
    return service


@asynccontextmanager
async def serving(service: Service) -> AsyncIterator[str]:
    """The HTTPS API of SERVICE on loopback; yields its URL."""
    api = HttpsApi(service, renderer(service))
    await api.start()
    try:
        assert api.runner is not None
        host, port = api.runner.addresses[0][:2]
        yield f"https://{host}:{port}"
    finally:
        await api.stop()


async def call(url: str, token: str | None, context: ssl.SSLContext, op: str, **fields: object) -> dict:
    """One request through the stdlib client, off the event loop (the server runs on it)."""
    def blocking() -> dict:
        with HttpClient(url, token or "", context, timeout=10) as client:
            return client.call(op, **fields)

    return await asyncio.to_thread(blocking)


async def raw(url: str, method: str, path: str, context: ssl.SSLContext, headers: dict[str, str] | None = None,
              body: bytes | None = None) -> tuple[int, dict, dict[str, str]]:
    """One request as any client could send it: the HTTP status, the JSON answer, the headers."""
    def blocking() -> tuple[int, dict, dict[str, str]]:
        parts = urllib.parse.urlsplit(url)
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, context=context, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read()), dict(response.headers)
        finally:
            conn.close()

    return await asyncio.to_thread(blocking)
