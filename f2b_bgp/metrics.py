"""Prometheus text for /metrics, read from the service at scrape time, and the plain localhost listener."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .config import Listen
from .logfmt import kv
from .model import QueueStatus, Status
from .service import Service

log = logging.getLogger(__name__)


class ServiceCollector(Collector):
    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        status = self.service.status()
        yield from self._backends(status)
        claims = GaugeMetricFamily("f2b_bgp_claims", "Active claims per owner (jail, or TOKEN/JAIL)", labels=["jail"])
        for jail, count in self.service.store.count_by_jail().items():
            claims.add_metric([jail], count)
        yield claims
        yield GaugeMetricFamily("f2b_bgp_pending_routes", "Prefixes some backend has not acknowledged",
                                value=status.routes.pending)
        yield GaugeMetricFamily("f2b_bgp_bans_last_minute", "New bans in the last minute (guards.max_rate)",
                                value=status.limits.bans_last_minute)
        yield GaugeMetricFamily("f2b_bgp_store_writable", "1 while the state store takes writes",
                                value=int(status.store.writable))
        yield from self._counts()
        if status.queue is not None:
            yield from _fail2ban_queue(status.queue)

    def _backends(self, status: Status) -> Iterator[Metric]:
        routes = GaugeMetricFamily("f2b_bgp_routes", "Blackholed prefixes per backend and state",
                                   labels=["backend", "state"])
        ready = GaugeMetricFamily("f2b_bgp_backend_ready", "1 when the backend takes commands", labels=["backend"])
        queued = GaugeMetricFamily("f2b_bgp_backend_queue_depth", "Commands queued for the backend",
                                   labels=["backend"])
        peers = GaugeMetricFamily("f2b_bgp_peer_up", "1 when ExaBGP reports the BGP session up",
                                  labels=["backend", "peer", "state"])
        wanted = self.service.store.count_wanted()
        for name, backend in status.backends.items():
            routes.add_metric([name, "active"], wanted - backend.pending)
            routes.add_metric([name, "pending"], backend.pending)
            ready.add_metric([name], int(backend.ready))
            if "queued" in backend.counters:
                queued.add_metric([name], backend.counters["queued"])
            for address, peer in backend.peers.items():
                peers.add_metric([name, address, peer.state], int(peer.state == "up"))
        yield from (routes, ready, queued, peers)

    def _counts(self) -> Iterator[Metric]:
        stats = self.service.stats
        events = CounterMetricFamily("f2b_bgp_events", "Bans, unbans, expiries, refusals and API errors by reason",
                                     labels=["event", "reason"])
        for (event, reason), count in sorted(stats.events.items()):
            events.add_metric([event, reason], count)
        yield events
        ack = HistogramMetricFamily("f2b_bgp_backend_ack_seconds", "Time from announce to the backend's ack",
                                    labels=["backend"])
        for name, histogram in sorted(stats.ack.items()):
            ack.add_metric([name], histogram.cumulative(), sum_value=histogram.total)
        yield ack


def _fail2ban_queue(queue: QueueStatus) -> Iterator[Metric]:
    yield GaugeMetricFamily("f2b_bgp_fail2ban_queue_depth", "fail2ban queue lines not applied yet", value=queue.depth)
    yield GaugeMetricFamily("f2b_bgp_fail2ban_queue_oldest_seconds", "Age of the oldest line not applied",
                            value=queue.oldest_age or 0.0)
    lines = CounterMetricFamily("f2b_bgp_fail2ban_queue_lines", "fail2ban queue lines since the start",
                                labels=["outcome"])
    for outcome, count in (("applied", queue.applied), ("refused", queue.refused), ("malformed", queue.malformed)):
        lines.add_metric([outcome], count)
    yield lines


Render = Callable[[], bytes]


def renderer(service: Service) -> Render:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    return lambda: generate_latest(registry)


class MetricsServer:
    """/metrics in plain HTTP on api.metrics.listen (localhost by default). A port that cannot be
    bound is logged and left: metrics must never keep the daemon from blackholing."""

    def __init__(self, render: Render, listens: tuple[Listen, ...]) -> None:
        self.render, self.listens = render, listens
        self.app = web.Application()
        self.app.router.add_get("/metrics", self._get)
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        if not self.listens:
            return
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        for listen in self.listens:
            try:
                await web.TCPSite(self.runner, listen.host, listen.port).start()
                log.info(kv("metrics", listen=str(listen)))
            except OSError as err:
                log.error(kv("metrics-off", listen=str(listen), error=err.strerror or str(err)))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


    async def _get(self, request: web.Request) -> web.Response:
        return metrics_response(self.render)


def metrics_response(render: Render) -> web.Response:
    return web.Response(body=render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})
