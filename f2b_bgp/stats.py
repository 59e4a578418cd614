"""What the daemon counts for /metrics: events by reason and backend acknowledgement times (stdlib only).

Plain numbers kept by the service; metrics.py turns them into Prometheus text
at scrape time, so the service does not depend on the exporter.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field

# seconds: a netlink ack takes well under 1 ms, ExaBGP a few ms, a central over HTTPS tens of ms
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(ACK_BUCKETS) + 1))  # the last: above every bucket
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(ACK_BUCKETS, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        running, out = 0, []
        for bound, count in zip([*map(str, ACK_BUCKETS), "+Inf"], self.counts):
            running += count
            out.append((bound, running))
        return out


@dataclass
class Stats:
    events: Counter[tuple[str, str]] = field(default_factory=Counter)  # (event, reason) -> count
    ack: dict[str, Histogram] = field(default_factory=dict)  # backend -> announce acknowledgement times

    def count(self, event: str, reason: str = "", n: int = 1) -> None:
        self.events[(event, reason)] += n

    def acknowledged(self, backend: str, seconds: float) -> None:
        self.ack.setdefault(backend, Histogram()).observe(seconds)
