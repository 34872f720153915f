"""Webhook transport: payload signing, SSRF-safe HTTP sessions and one-attempt delivery.

Nothing here touches the database; the delivery job calls ``sender.deliver`` per attempt.
"""

from __future__ import annotations
