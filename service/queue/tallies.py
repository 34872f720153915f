"""Writing tallies: the counts finalizers add to shared rows, summed once per flush."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from service.data import Connection
from service.queue.types import Tally

Key = tuple[str, int]


class TallyFailed(Exception):
    """A shared row could not be written; ``job_ids`` contributed to it."""

    def __init__(self, key: Key, job_ids: list[int], reason: str) -> None:
        super().__init__(f"tally {key[0]} {key[1]}: {reason}")
        self.job_ids = job_ids


@dataclass(slots=True)
class _Sum:
    tally: Tally
    job_ids: list[int]


async def write_tallies(
    conn: Connection, contributions: Sequence[tuple[int, Tally]], timeout_s: float
) -> None:
    """One write per (kind, ref id), in that order; ``contributions`` are (job id, tally)."""
    sums: dict[Key, _Sum] = {}
    for job_id, tally in contributions:
        key = (tally.kind, tally.ref_id)
        found = sums.get(key)
        if found is None:
            sums[key] = _Sum(tally, [job_id])
            continue
        found.job_ids.append(job_id)
        if found.tally.write != tally.write or len(found.tally.counts) != len(tally.counts):
            raise TallyFailed(key, found.job_ids, "tallies of one row disagree in shape")
        counts = tuple(a + b for a, b in zip(found.tally.counts, tally.counts, strict=True))
        found.tally = replace(found.tally, counts=counts)
    for key in sorted(sums):
        found = sums[key]
        try:
            async with asyncio.timeout(timeout_s):
                await found.tally.write(conn, key[1], found.tally.counts)
        except Exception as exc:
            raise TallyFailed(key, found.job_ids, f"{type(exc).__name__}: {exc}") from exc
