"""`f2b-bgp serve`: wire config, store, backends, service and API into one asyncio loop."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import signal
from pathlib import Path

from .api import ApiServer
from .backends.base import Backend
from .backends.exabgp import BridgeAccess, ExabgpBackend
from .backends.exabgp import attributes as exabgp_attributes
from .config import Config, load_config
from .errors import ConfigError, StoreError
from .guards import empty_protection
from .hostfacts import read_host_facts
from .https_api import HttpsApi
from .logfmt import kv
from .metrics import MetricsServer, renderer
from .service import Service, Unaccounted
from .spool import Spool, default_path, prepare
from .spool_runner import SpoolRunner
from .store import Store

log = logging.getLogger("f2b_bgp")

ATTRIBUTES_KEY = "exabgp.attributes"


def run(path: Path, debug: bool = False, unaccounted: Unaccounted = Unaccounted.REFUSE) -> None:
    config = load_config(path)
    logging.basicConfig(
        level=logging.DEBUG if debug else getattr(logging, config.daemon.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(config, unaccounted))


async def reload(service: Service) -> None:
    """SIGHUP: take new guards and daemon settings, then reconcile (withdrawing what they now refuse)."""
    try:
        fresh = load_config(service.config.path)
    except ConfigError as err:
        log.error("reload refused, keeping the running config: %s", err.message)
        return
    old = service.config
    if (fresh.kernel, fresh.exabgp, fresh.remotes, fresh.daemon.socket, fresh.api.https, fresh.api.metrics_listen) \
            != (old.kernel, old.exabgp, old.remotes, old.daemon.socket, old.api.https, old.api.metrics_listen):
        log.warning("reload: backend, socket or listener settings changed; they take effect at the next restart")
    # api.tokens are taken now: a token removed from the config is refused from the next request on
    service.config = dataclasses.replace(
        fresh, kernel=old.kernel, exabgp=old.exabgp, remotes=old.remotes,
        api=dataclasses.replace(fresh.api, https=old.api.https, metrics_listen=old.api.metrics_listen))
    try:
        for backend in service.backends:
            if isinstance(backend, ExabgpBackend) and backend.reconfigure(exabgp_attributes(fresh.bgp)):
                log.warning(kv("reload", bgp="next-hops or communities changed", action="re-announcing every route"))
                service.store.set_meta(ATTRIBUTES_KEY, backend.describe())
        report = await service.reconcile("reload")
    except StoreError as err:
        log.error(kv("reload-incomplete", error=err.message, then="the next periodic check retries"))
        return
    log.info(kv("reloaded", config=fresh.path, guard_withdrawn=len(report.guard_withdrawn)))


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
        access = BridgeAccess(config.exabgp.bridge_user)
        output_cap = (config.guards.max_routes + 1000) * max(1, len(config.bgp.peers))
        backends.append(ExabgpBackend(config.exabgp, exabgp_attributes(config.bgp), access, output_cap))
    if config.remotes:
        from .backends.remote import RemoteBackend

        backends += [RemoteBackend(remote, config.daemon.retry_interval) for remote in config.remotes]
    if not backends:
        raise ConfigError(["backends: no backend enabled (backends.kernel.enabled, backends.exabgp.enabled "
                           "or backends.remote)"], str(config.path))
    return backends


async def serve(config: Config, unaccounted: Unaccounted = Unaccounted.REFUSE) -> None:
    host = await read_host_facts()
    if empty_protection(config.guards, host) and not config.guards.allow_empty_protected:
        raise ConfigError(["guards.protected: empty and no host address found; refusing to start "
                           "(set guards.allow_empty_protected = true to override)"], str(config.path))
    backends = make_backends(config)
    store = Store(config.daemon.database)
    service = Service(config, store, backends, host, read_host=read_host_facts)
    api = ApiServer(service, config.daemon.socket, config.daemon.socket_mode, config.daemon.socket_group)
    render = renderer(service)
    https = HttpsApi(service, render) if config.api.https.listen else None
    metrics = MetricsServer(render, config.api.metrics_listen)
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
        if store.fresh:
            await settle_unaccounted(service, unaccounted)
        remember_attributes(service)
        await service.reconcile("start")
        queue = await start_queue(service)
        # What start-up loaded (a prefix object per stored ban) lives as long as the daemon: kept out
        # of the collector's full scans, which otherwise pause every client ~0.1 s per million bans.
        gc.freeze()
        try:
            await api.start()
        except KeyError as err:
            raise ConfigError([f"daemon.socket_group: no such group {err}"], str(config.path)) from err
        if https is not None:
            try:
                await https.start()
            except OSError as err:
                raise ConfigError([f"api.https.listen: cannot listen: {err.strerror or err}"],
                                  str(config.path)) from err
        await metrics.start()
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
        await metrics.stop()
        if https is not None:
            await https.stop()
        await api.stop()
        for backend in backends:
            await backend.stop()
        store.close()
        if service.queue is not None:
            service.queue.close()


async def settle_unaccounted(service: Service, choice: Unaccounted) -> None:
    """A new or emptied store knows no ban: routes of ours already in a backend are not its to withdraw.
    Refused while a backend says it holds some; otherwise each backend's first report (now, or when
    ExaBGP's bridge first connects) keeps, adopts or discards what it holds (Service.unaccounted_choice)."""
    found = set()
    for backend in service.backends:
        found |= await backend.installed() or set()
    if found and choice is Unaccounted.REFUSE:
        raise StoreError(
            f"store {service.store.path} is new or empty but the backends hold {len(found)} routes of ours",
            hint="start once with 'f2b-bgp serve --adopt' to keep them as bans (default bantime) "
                 "or 'f2b-bgp serve --discard' to withdraw them")
    service.unaccounted_choice = choice


def remember_attributes(service: Service) -> None:
    """ExaBGP outlives the daemon: if the attributes changed since the last run, announce everything again."""
    for backend in service.backends:
        if isinstance(backend, ExabgpBackend):
            now, before = backend.describe(), service.store.meta(ATTRIBUTES_KEY)
            backend.stale_attributes = before is not None and before != now
            service.store.set_meta(ATTRIBUTES_KEY, now)
