"""The daemon's listening Unix sockets (the API, ExaBGP's bridge): private from the start, then their mode and group."""

from __future__ import annotations

import asyncio
import grp
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen(handler: Handler, path: Path, mode: int, group: str, limit: int,
                 owner: int | None = None) -> asyncio.AbstractServer:
    """Serve HANDLER on PATH (a stale socket there is replaced), chmod MODE, chgrp GROUP if set,
    chown OWNER if set and not already ours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove(path)
    old = os.umask(0o177)  # never world-accessible, not even for a moment
    try:
        server = await asyncio.start_unix_server(handler, path=str(path), limit=limit)
    finally:
        os.umask(old)
    if group:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    if owner is not None and owner != os.geteuid():
        os.chown(path, owner, -1)
    os.chmod(path, mode)
    return server


def remove(path: Path) -> None:
    if path.is_socket():
        path.unlink()
