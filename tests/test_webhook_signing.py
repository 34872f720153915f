"""Webhook signing: secrets, signature known answers, signed headers, receiver-side checks."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from standardwebhooks import Webhook

from service.webhooks import sender, signing
from tests.webhook_helpers import Receiver

# --- signing ---------------------------------------------------------------------------------


def test_new_secret_is_standard_webhooks_form() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing.new_secret() != secret


def test_standard_signature_known_answer() -> None:
    signature = signing.standard_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        timestamp_s=1614265330,
        body=b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_body_signature_known_answer() -> None:
    # GitHub's published vector: the key is the secret string itself, as for our secrets.
    expected = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signing.body_signature("It's a Secret to Everybody", b"Hello, World!") == expected
    assert signing.verify_signature("It's a Secret to Everybody", b"Hello, World!", expected)
    assert not signing.verify_signature("It's a Secret to Everybody", b"Hello, World?", expected)
    assert not signing.verify_signature("It's a Secret to Everybody", b"Hello, World!", "ü")


def test_sign_headers_shape_and_retry_semantics() -> None:
    secret, body = signing.new_secret(), b'{"a": 1}'
    first_at = datetime(2026, 3, 1, 12, 0, 5, 700000, tzinfo=UTC)
    first = signing.sign_headers(
        secret=secret, body=body, event="batch.done", delivery_id="dlv_1", timestamp=first_at
    )
    assert first == {
        "Content-Type": "application/json",
        "User-Agent": "vault-service-webhooks/1",
        "X-Webhook-Event": "batch.done",
        "X-Webhook-ID": "dlv_1",
        "X-Webhook-Timestamp": "2026-03-01T12:00:05Z",
        "X-Webhook-Signature": signing.body_signature(secret, body),
        "webhook-id": "dlv_1",
        "webhook-timestamp": str(int(first_at.timestamp())),
        "webhook-signature": first["webhook-signature"],
    }
    retry = signing.sign_headers(
        secret=secret,
        body=body,
        event="batch.done",
        delivery_id="dlv_1",
        timestamp=first_at + timedelta(minutes=1),
    )
    assert retry["webhook-id"] == first["webhook-id"]
    assert retry["webhook-timestamp"] != first["webhook-timestamp"]
    assert retry["webhook-signature"] != first["webhook-signature"]


@pytest.mark.parametrize(
    ("secret", "delivery_id", "timestamp"),
    [
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg.1", datetime.now(UTC)),
        ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_1", datetime(2026, 1, 1)),
        ("whsec_not base64!", "msg_1", datetime.now(UTC)),
        ("whsec_", "msg_1", datetime.now(UTC)),
    ],
)
def test_sign_headers_rejects_bad_input(secret: str, delivery_id: str, timestamp: datetime) -> None:
    with pytest.raises(ValueError):
        signing.sign_headers(
            secret=secret, body=b"{}", event="e", delivery_id=delivery_id, timestamp=timestamp
        )


def test_signature_covers_exact_bytes() -> None:
    secret, body = signing.new_secret(), b'{"b":2,"a":1}'
    signature = signing.body_signature(secret, body)
    reserialised = json.dumps(json.loads(body), sort_keys=True).encode()
    assert not signing.verify_signature(secret, reserialised, signature)


async def test_receiver_verifies_the_delivery(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    secret, body = signing.new_secret(), b'{"event": "certificate_application.created", "n": 1}'
    headers = signing.sign_headers(
        secret=secret,
        body=body,
        event="certificate_application.created",
        delivery_id="dlv_01HZX",
        timestamp=datetime.now(UTC),
    )
    result = await sender.deliver(session, url=receiver.url("/ok"), body=body, headers=headers)
    assert result.ok
    [hit] = receiver.hits
    assert hit.body == body
    assert signing.verify_signature(secret, hit.body, hit.headers["X-Webhook-Signature"])
    assert hit.headers["X-Webhook-Signature"] == signing.body_signature(secret, hit.body)
    assert Webhook(secret).verify(hit.body, hit.headers) == json.loads(body)
    assert hit.headers["X-Webhook-ID"] == hit.headers["webhook-id"] == "dlv_01HZX"
    assert hit.headers["X-Webhook-Event"] == "certificate_application.created"
    assert hit.headers["User-Agent"] == "vault-service-webhooks/1"
    assert "Cookie" not in hit.headers
