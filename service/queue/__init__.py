"""The PostgreSQL job engine: enqueue inside your transaction, run jobs with leases, fencing
tokens, batched heartbeats and acks, retries with backoff, and a graceful drain."""

from __future__ import annotations

from service.queue.engine import Engine
from service.queue.metrics import EngineMetrics
from service.queue.producer import enqueue, enqueue_many
from service.queue.store import CHANNEL
from service.queue.types import (
    EngineConfig,
    ExhaustedHandler,
    Finalizer,
    Handler,
    JobContext,
    JobType,
    PermanentFailure,
    RetryLater,
    Tallies,
    Tally,
    TallyWriter,
    exponential_backoff,
)
from service.queue.wiring import ENGINE, Shutdown, run_worker, workers_ctx

__all__ = [
    "CHANNEL",
    "ENGINE",
    "Engine",
    "EngineConfig",
    "EngineMetrics",
    "ExhaustedHandler",
    "Finalizer",
    "Handler",
    "JobContext",
    "JobType",
    "PermanentFailure",
    "RetryLater",
    "Shutdown",
    "Tallies",
    "Tally",
    "TallyWriter",
    "enqueue",
    "enqueue_many",
    "exponential_backoff",
    "run_worker",
    "workers_ctx",
]
