"""Prometheus metrics of one engine, registered in the registry the app passes in (or none)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# seconds: from a few milliseconds (no-op jobs) to the job timeout
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
PICKUP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class EngineMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str) -> Counter:
            return Counter(f"vault_jobs_{name}", doc, ["kind"], registry=registry)

        self.claimed = counter("claimed", "Jobs claimed (including reclaimed expired leases).")
        self.reclaimed = counter("reclaimed", "Jobs claimed again after their lease expired.")
        self.completed = counter("completed", "Jobs that succeeded and were acknowledged.")
        self.failed = counter("failed", "Failed attempts (exceptions, timeouts, finalizers).")
        self.retried = counter("retried", "Jobs put back for another attempt.")
        self.exhausted = counter("exhausted", "Jobs given up on (on_exhausted ran).")
        self.stale = counter("stale_acks", "Outcomes refused because the lease was lost.")
        self.in_flight = Gauge(
            "vault_jobs_in_flight", "Jobs held by this process.", registry=registry
        )
        self.depth = Gauge(
            "vault_jobs_queue_depth", "Jobs in the queue by state.", ["state"], registry=registry
        )
        self.duration = Histogram(
            "vault_job_duration_seconds",
            "Time a job's handler ran.",
            ["kind"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.pickup = Histogram(
            "vault_job_pickup_latency_seconds",
            "From a job's run_at to its claim.",
            ["kind"],
            buckets=PICKUP_BUCKETS,
            registry=registry,
        )

    def set_depth(self, ready: int, running: int) -> None:
        self.depth.labels("ready").set(ready)
        self.depth.labels("running").set(running)
