"""Recipient email: compose the certificate message (``compose``) and deliver it (``send``)."""

from __future__ import annotations
