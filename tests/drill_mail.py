"""An SMTP server for the drills: it keeps what it accepts, and can freeze its client at a
chosen step so a kill lands exactly there."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any, cast

import asyncpg
from aiosmtpd.smtp import SMTP as SmtpServerProtocol
from aiosmtpd.smtp import Envelope, Session


class Mailbox:
    """aiosmtpd handler keeping what it accepts. ``trap(step, pid)`` freezes (SIGSTOP) the
    sender's process group the first time it reaches MAIL (nothing sent yet) or DATA (the
    message is kept, and accepted, but the sender never reads the 250)."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.sprung = asyncio.Event()
        self._step: str | None = None
        self._victim = 0

    def trap(self, step: str, pid: int) -> None:
        self._step, self._victim = step, pid

    def message_ids(self) -> Counter[str]:
        return Counter("".join(str(m["Message-ID"]).split()) for m in self.messages)

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        envelope.mail_from = address
        self._spring("MAIL")
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = cast(bytes, envelope.content)
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))
        self._spring("DATA")
        return "250 Message accepted"

    def _spring(self, step: str) -> None:
        if step == self._step and not self.sprung.is_set():
            os.killpg(self._victim, signal.SIGSTOP)
            self.sprung.set()


@asynccontextmanager
async def smtp_mailbox() -> AsyncIterator[tuple[Mailbox, str]]:
    """A real SMTP server on 127.0.0.1 and the SMTP_URL pointing at it."""
    mailbox = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SmtpServerProtocol(mailbox, hostname="drill", loop=loop), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield mailbox, f"smtp://127.0.0.1:{port}?starttls=false&timeout=5"
    finally:
        server.close()
        await server.wait_closed()


async def assert_one_email_each(
    conn: asyncpg.Connection, mailbox: Mailbox, duplicated: str | None = None
) -> None:
    """One message per outbox row; only ``duplicated`` (the documented window) came twice,
    under the same Message-ID."""
    expected = {
        row["message_id"] for row in await conn.fetch("SELECT message_id FROM email_outbox")
    }
    assert dict(mailbox.message_ids()) == {mid: 2 if mid == duplicated else 1 for mid in expected}
