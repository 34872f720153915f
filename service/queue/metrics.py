"""Prometheus metrics of one engine, registered in the registry the app passes in (or none).

The two per-job histograms are kept by a small collector of our own: ``Histogram.observe``
of prometheus_client takes a lock per bucket and costs several times more per job.
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from service.queue.outcomes import Outcome, Result

# seconds: from a few milliseconds (no-op jobs) to the job timeout
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PICKUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)

COUNTERS = {
    "claimed": "Jobs claimed (including reclaimed expired leases).",
    "reclaimed": "Jobs claimed again after their lease expired.",
    "completed": "Jobs that succeeded and were acknowledged.",
    "failed": "Failed attempts (exceptions, timeouts, finalizers), as acknowledged.",
    "retried": "Jobs put back for another attempt.",
    "exhausted": "Jobs given up on (on_exhausted ran).",
    "stale_acks": "Outcomes refused because the lease was lost.",
}


class Distribution:
    """One histogram series: counts per bucket (not cumulative) and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


class HistogramCollector(Collector):
    def __init__(self, name: str, documentation: str, bounds: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = bounds
        self.series: dict[str, Distribution] = {}

    def labels(self, kind: str) -> Distribution:
        return self.series.setdefault(kind, Distribution(self.bounds))

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=["kind"])
        for kind, series in self.series.items():
            cumulative, buckets = 0, []
            edges = [*map(floatToGoString, self.bounds), "+Inf"]
            for bound, count in zip(edges, series.counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            family.add_metric([kind], buckets, series.total)
        yield family


@dataclass(frozen=True, slots=True)
class KindMetrics:
    """The children of every per-kind metric, looked up once (labels() is not free)."""

    claimed: Any
    reclaimed: Any
    completed: Any
    failed: Any
    retried: Any
    exhausted: Any
    stale_acks: Any
    duration: Distribution
    pickup: Distribution


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self._counters = {
            name: Counter(f"vault_jobs_{name}", doc, ["kind"], registry=registry)
            for name, doc in COUNTERS.items()
        }
        self._duration = HistogramCollector(
            "vault_job_duration_seconds", "Time a job's handler ran.", DURATION_BUCKETS
        )
        self._pickup = HistogramCollector(
            "vault_job_pickup_latency_seconds",
            "From a job's run_at to its claim (first claims only).",
            PICKUP_BUCKETS,
        )
        if registry is not None:
            registry.register(self._duration)
            registry.register(self._pickup)
        self.in_flight = Gauge(
            "vault_jobs_in_flight", "Jobs held by this process.", registry=registry
        )
        self._depth = Gauge(
            "vault_jobs_queue_depth", "Jobs in the queue by state.", ["state"], registry=registry
        )
        self._kinds: dict[str, KindMetrics] = {}

    def kind(self, name: str) -> KindMetrics:
        metrics = self._kinds.get(name)
        if metrics is None:
            children = {key: counter.labels(name) for key, counter in self._counters.items()}
            metrics = KindMetrics(
                **children, duration=self._duration.labels(name), pickup=self._pickup.labels(name)
            )
            self._kinds[name] = metrics
        return metrics

    def written(self, results: Sequence[tuple[Result, Outcome]]) -> None:
        """Count outcomes the ack buffer committed, by result and kind."""
        tally: collections.Counter[tuple[Result, str]] = collections.Counter()
        for result, outcome in results:
            kind = outcome.job.ctx.kind
            tally[result, kind] += 1
            if outcome.error is not None and result is not Result.STALE:
                self.kind(kind).failed.inc()
        for (result, kind), count in tally.items():
            getattr(self.kind(kind), result.value).inc(count)

    def set_depth(self, ready: int, running: int) -> None:
        self._depth.labels("ready").set(ready)
        self._depth.labels("running").set(running)
