"""The webhook delivery tests' loopback receiver (it answers as each test's path asks) and an
app whose settings let it deliver to loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.config import Settings
from tests.webhook_delivery.helpers import Receiver, lenient, serve


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    runner, rx = await serve("127.0.0.1")
    yield rx
    await runner.cleanup()


@pytest.fixture
async def vault(
    settings: Settings, aiohttp_client: Callable[..., Awaitable[TestClient]]
) -> TestClient:
    return await aiohttp_client(create_app(lenient(settings)))
