"""Webhook signatures: X-Webhook-Signature (hex HMAC-SHA256 of the raw body) and Standard Webhooks.

One secret, ``whsec_<base64 of 32 random bytes>``, serves both: the X-Webhook-Signature key is the
whole secret string as UTF-8 (copy, paste, HMAC), the Standard Webhooks key is the decoded base64.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from service.timestamps import second_timestamp

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "vault-service-webhooks/1"

# Standard Webhooks signs "{id}.{timestamp}.{body}", so the id must not contain a dot.
_DELIVERY_ID = re.compile(r"[A-Za-z0-9_:-]{1,128}")
_EVENT = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def new_secret() -> str:
    """A fresh endpoint secret in Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def body_signature(secret: str, body: bytes) -> str:
    """The X-Webhook-Signature value: lowercase hex HMAC-SHA256 of ``body``, keyed by ``secret``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def standard_signature(secret: str, *, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """The Standard Webhooks ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>``."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def sign_headers(
    *, secret: str, body: bytes, event: str, delivery_id: str, timestamp: datetime
) -> dict[str, str]:
    """Every header of one delivery attempt; ``timestamp`` is the attempt's (timezone-aware) time.

    Raises ValueError for a naive timestamp, a malformed secret, or an id or event name that is
    not a short token (the id must stay the same across the retries of one delivery).
    """
    if not _DELIVERY_ID.fullmatch(delivery_id):
        raise ValueError("delivery_id must be 1-128 characters of [A-Za-z0-9_:-]")
    if not _EVENT.fullmatch(event):
        raise ValueError("event must be 1-128 characters of [A-Za-z0-9_.:-]")
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    utc = timestamp.astimezone(UTC)
    unix_s = int(utc.timestamp())
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Event": event,
        "X-Webhook-ID": delivery_id,
        "X-Webhook-Timestamp": second_timestamp(utc),
        "X-Webhook-Signature": body_signature(secret, body),
        "webhook-id": delivery_id,
        "webhook-timestamp": str(unix_s),
        "webhook-signature": standard_signature(
            secret, msg_id=delivery_id, timestamp_s=unix_s, body=body
        ),
    }


def verify_signature(secret: str, body: bytes, signature_hex: str) -> bool:
    """Whether ``signature_hex`` is the X-Webhook-Signature of ``body`` (constant-time compare)."""
    expected = body_signature(secret, body).encode()
    return hmac.compare_digest(expected, signature_hex.strip().lower().encode())


def _standard_key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError("webhook secret must be 'whsec_' followed by base64") from exc
    if not key:
        raise ValueError("webhook secret is empty")
    return key
