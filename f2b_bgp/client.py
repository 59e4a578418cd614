"""A small client of the local API (stdlib only: it runs for every fail2ban ban)."""

from __future__ import annotations

import json
import socket
from typing import Any

from .errors import ERRORS_BY_CODE, F2bBgpError, UnavailableError


class Client:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _connect(self) -> socket.socket:
        if self.sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self.path)
            except OSError as err:
                sock.close()
                raise UnavailableError(
                    f"daemon not reachable at {self.path}: {err.strerror or err}",
                    hint="is 'f2b-bgp serve' running? (systemctl status f2b-bgp)",
                ) from err
            self.sock = sock
        return self.sock

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request; return the response or raise the error it carries."""
        sock = self._connect()
        request = {"op": op, **{k: v for k, v in fields.items() if v is not None}}
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            while b"\n" not in self.buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    raise UnavailableError(f"daemon at {self.path} closed the connection")
                self.buffer += chunk
        except OSError as err:
            self.close()
            raise UnavailableError(f"daemon at {self.path} did not answer: {err}") from err
        line, _, self.buffer = self.buffer.partition(b"\n")
        response = json.loads(line)
        if not response.get("ok"):
            cls = ERRORS_BY_CODE.get(response.get("code", ""), F2bBgpError)
            raise cls(response.get("error", "unknown error"), response.get("hint", ""))
        return response
