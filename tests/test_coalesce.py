"""Coalesced lookups: concurrent calls share one statement, and each gets its own answer."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.coalesce import Coalesced
from service.data import emails as email_data
from service.data import recipients as recipient_data


class Recorder:
    """A lookup that records its calls and can be held until released."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.cancelled: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, keys: list[int]) -> list[int]:
        self.calls.append(keys)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(keys)
            raise
        if -1 in keys:
            raise ValueError("a bad key")
        return [key * 10 for key in keys]


Caller = asyncio.Future[int]


async def one_running_two_waiting() -> tuple[Recorder, Caller, list[Caller]]:
    """A held lookup of key 1 under way, and callers of 2 and 3 arrived since."""
    lookup = Recorder()
    lookup.release.clear()
    coalesced = Coalesced(lookup)
    running = asyncio.ensure_future(coalesced(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiting = [asyncio.ensure_future(coalesced(n)) for n in (2, 3)]
    await asyncio.sleep(0)
    return lookup, running, waiting


async def test_calls_of_one_turn_share_one_lookup() -> None:
    lookup = Recorder()
    coalesced = Coalesced(lookup)
    assert await asyncio.gather(*(coalesced(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert lookup.calls == [[0, 1, 2, 3, 4]]


async def test_calls_made_while_a_lookup_runs_share_the_next() -> None:
    lookup, first, later = await one_running_two_waiting()
    assert lookup.calls == [[1]]
    lookup.release.set()
    assert await asyncio.gather(first, *later) == [10, 20, 30]
    assert lookup.calls == [[1], [2, 3]]


async def test_a_caller_alone_is_answered_at_once_each_time() -> None:
    lookup = Recorder()
    coalesced = Coalesced(lookup)
    assert [await coalesced(n) for n in (1, 2)] == [10, 20]
    assert lookup.calls == [[1], [2]]


async def test_batches_are_at_most_the_given_size() -> None:
    lookup = Recorder()
    coalesced = Coalesced(lookup, at_most=2)
    assert await asyncio.gather(*(coalesced(n) for n in range(5))) == [0, 10, 20, 30, 40]
    assert lookup.calls == [[0, 1], [2, 3], [4]]


async def test_a_failing_lookup_fails_the_calls_it_served_and_not_the_next() -> None:
    lookup = Recorder()
    coalesced = Coalesced(lookup)
    results = await asyncio.gather(coalesced(1), coalesced(-1), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)
    assert await coalesced(2) == 20


async def test_a_lookup_answering_the_wrong_count_fails_its_calls() -> None:
    async def short(keys: list[int]) -> list[int]:
        return keys[:-1]

    coalesced = Coalesced(short)
    with pytest.raises(RuntimeError, match="1 values for 2 keys"):
        await asyncio.gather(coalesced(1), coalesced(2))


async def test_a_cancelled_caller_leaves_the_others_their_answer() -> None:
    lookup, running, waiting = await one_running_two_waiting()
    running.cancel()
    waiting[0].cancel()  # not sent yet: dropped from the next lookup
    lookup.release.set()
    assert await waiting[1] == 30
    assert lookup.calls == [[1], [3]]
    assert lookup.cancelled == [[1]]  # wanted by nobody: cancelled, and [3] sent on its own
    assert running.cancelled() and waiting[0].cancelled()


async def test_a_lookup_nobody_waits_for_any_more_is_cancelled() -> None:
    """As a caller's own statement would be (a shutdown, a time limit): it must not go on
    holding a connection, perhaps waiting on a lock. A later caller gets a lookup of its own."""
    lookup = Recorder()
    lookup.release.clear()
    coalesced = Coalesced(lookup)
    callers = [asyncio.ensure_future(coalesced(n)) for n in (1, 2)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    callers[0].cancel()
    await asyncio.sleep(0)
    assert lookup.cancelled == []  # the other caller still waits for it
    callers[1].cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0)
    assert lookup.cancelled == [[1, 2]]
    lookup.release.set()
    assert await coalesced(3) == 30
    assert lookup.calls == [[1, 2], [3]]


async def test_recipients_are_found_case_insensitively_in_order(
    conn: asyncpg.Connection,
) -> None:
    ada = await recipient_data.add_recipient(conn, email="Ada@Example.com", name="Ada")
    assert ada is not None
    emails = ["nobody@example.com", "ada@example.COM", "ADA@EXAMPLE.COM", "x@example.com"]
    found = await recipient_data.find_recipients(conn, emails=emails)
    assert found == [None, ada["id"], ada["id"], None]


async def test_emails_are_loaded_in_order_with_none_for_unknown_ids(
    conn: asyncpg.Connection,
) -> None:
    assert await email_data.load_emails(conn, outbox_ids=[7, 8]) == [None, None]
