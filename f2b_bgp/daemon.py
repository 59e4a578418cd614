"""`f2b-bgp serve`: wire config, store, backends, service and API into one asyncio loop."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from pathlib import Path

from .api import ApiServer
from .backends.base import Backend
from .config import Config, load_config
from .errors import ConfigError
from .guards import empty_protection
from .hostfacts import read_host_facts
from .service import Service
from .spool import Spool, default_path, prepare
from .spool_runner import SpoolRunner
from .store import Store

log = logging.getLogger("f2b_bgp")


def run(path: Path, debug: bool = False) -> None:
    config = load_config(path)
    logging.basicConfig(
        level=logging.DEBUG if debug else getattr(logging, config.daemon.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(config))


async def reload(service: Service) -> None:
    """SIGHUP: take new guards and daemon settings, then reconcile (withdrawing what they now refuse)."""
    try:
        fresh = load_config(service.config.path)
    except ConfigError as err:
        log.error("reload refused, keeping the running config: %s", err.message)
        return
    if (fresh.kernel, fresh.exabgp, fresh.daemon.socket) != (service.config.kernel, service.config.exabgp,
                                                            service.config.daemon.socket):
        log.warning("reload: backend or socket settings changed; they take effect at the next restart")
    service.config = dataclasses.replace(fresh, kernel=service.config.kernel, exabgp=service.config.exabgp)
    report = await service.reconcile("reload")
    log.info("reloaded config=%s guard_withdrawn=%d", fresh.path, len(report["guard_withdrawn"]))


async def start_queue(service: Service) -> SpoolRunner:
    """Apply what fail2ban queued while the daemon was away, before the API can take newer requests."""
    path = default_path(service.config.daemon.database)
    prepare(path)
    service.queue = Spool(path)
    runner = SpoolRunner(service.queue, service)
    applied = await runner.drain()
    log.info("queue path=%s lines=%d", path, applied)
    return runner


def make_backends(config: Config) -> list[Backend]:
    backends: list[Backend] = []
    if config.kernel.enabled:
        from .backends.kernel import KernelBackend

        backends.append(KernelBackend(config.kernel))
    if config.exabgp.enabled:
        from .backends.exabgp import ExabgpBackend

        backends.append(ExabgpBackend(config))
    if not backends:
        raise ConfigError(["backends: no backend enabled (backends.kernel.enabled or backends.exabgp.enabled)"],
                          str(config.path))
    return backends


async def serve(config: Config) -> None:
    host = await read_host_facts()
    if empty_protection(config.guards, host) and not config.guards.allow_empty_protected:
        raise ConfigError(["guards.protected: empty and no host address found; refusing to start "
                           "(set guards.allow_empty_protected = true to override)"], str(config.path))
    backends = make_backends(config)
    store = Store(config.daemon.database)
    service = Service(config, store, backends, host, read_host=read_host_facts)
    api = ApiServer(service, config.daemon.socket, config.daemon.socket_mode, config.daemon.socket_group)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    def on_hup() -> None:
        task = asyncio.create_task(reload(service))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    try:
        for backend in backends:
            await backend.start()
        await service.reconcile("start")
        queue = await start_queue(service)
        try:
            await api.start()
        except KeyError as err:
            raise ConfigError([f"daemon.socket_group: no such group {err}"], str(config.path)) from err
        workers = [asyncio.create_task(service.run_expiry()), asyncio.create_task(service.run_maintenance()),
                   asyncio.create_task(queue.run())]
        log.info("ready socket=%s backends=%s routes=%d", config.daemon.socket,
                 ",".join(b.name for b in backends), store.count_wanted())
        await stop.wait()
        log.info("stopping (routes stay in place)")
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    finally:
        await api.stop()
        for backend in backends:
            await backend.stop()
        store.close()
        if service.queue is not None:
            service.queue.close()
