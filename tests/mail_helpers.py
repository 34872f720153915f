"""Shared mail test pieces: sample values, email builder/parsers, in-process aiosmtpd server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from typing import Any, cast

from aiosmtpd.smtp import SMTP as SmtpServerProtocol
from aiosmtpd.smtp import Envelope, Session

from service.mail import compose, send

CERT_UUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
MESSAGE_ID = f"<certificate-{CERT_UUID}@mail.example.org>"
RECIPIENT = "ada@example.org"
VERIFY_URL = "https://vault.example.org/verify/AB12CD34EF56"
INTENDED_HEADERS = {"from", "to", "subject", "date", "message-id", "auto-submitted"}
MIME_HEADERS = {"mime-version", "content-type"}


def build(**overrides: str) -> EmailMessage:
    return composed(**overrides).as_message()


def composed(**overrides: str) -> compose.CertificateEmail:
    fields = {
        "certificate_uuid": CERT_UUID,
        "recipient_name": "Zoë Ångström",
        "recipient_email": RECIPIENT,
        "certificate_title": "Analytical Engines 101",
        "institution_name": "University of London",
        "verify_url": VERIFY_URL,
        "sender": "Certificate Vault <no-reply@example.org>",
        "message_id_domain": "mail.example.org",
    }
    return compose.compose_certificate_email(**(fields | overrides))


def parse(raw: bytes) -> EmailMessage:
    return cast(EmailMessage, email.message_from_bytes(raw, policy=email.policy.default))


def parts(message: EmailMessage) -> tuple[str, str]:
    text, html = (message.get_body((kind,)) for kind in ("plain", "html"))
    assert text is not None and html is not None
    return cast(EmailMessage, text).get_content(), cast(EmailMessage, html).get_content()


class Sink:
    """aiosmtpd handler that keeps what it accepts, or answers RCPT/DATA with a canned reply."""

    def __init__(self, *, rcpt_reply: str | None = None, data_reply: str | None = None) -> None:
        self.rcpt_reply, self.data_reply = rcpt_reply, data_reply
        self.accepted: list[tuple[Session, Envelope]] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        envelope.rcpt_tos.append(address)
        return self.rcpt_reply or "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if self.data_reply:
            return self.data_reply
        self.accepted.append((session, envelope))
        return "250 Message accepted"

    def only(self) -> tuple[Session, Envelope, EmailMessage]:
        [(session, envelope)] = self.accepted
        return session, envelope, parse(cast(bytes, envelope.content))


@asynccontextmanager
async def smtp_server(
    handler: Sink, *, implicit_tls: ssl.SSLContext | None = None, **options: Any
) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SmtpServerProtocol(handler, hostname="test", loop=loop, **options),
        "127.0.0.1",
        0,
        ssl=implicit_tls,
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def plain(port: int, credentials: str = "") -> send.SmtpSettings:
    return send.parse_smtp_url(f"smtp://{credentials}127.0.0.1:{port}?starttls=false&timeout=5")
