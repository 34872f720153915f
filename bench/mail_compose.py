"""CPU per recipient email: composing it, and serialising it as the .eml path does (its bytes
written directly) and as the stdlib and the SMTP path do.

Varied inputs (ASCII, accented, CJK, long and hostile names). CPU only, no network.
Run from the repository root: ``python -m bench.mail_compose --calls 2000``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage

from aiosmtplib.email import flatten_message

from service.mail import compose, send

NAMES = (
    "Ada Lovelace",
    "Zoë Ångström",
    "李小龙",
    "Dr. Grace O'Brien-Hopper, PhD",
    "Bob\r\nBcc: evil@example.net",
    "=?utf-8?q?=0D=0ABcc:_evil@example.net?=",
    "Hubert Blaine Wolfeschlegelsteinhausenbergerdorff Sr. " * 3,
)
TITLES = (
    "Analytical Engines 101",
    "Advanced Certificate in Data Protection & Information Governance (2025 cohort)",
    "Diplôme universitaire de mécanique céleste",
    '"><img src=x onerror=alert(1)>',
)
EMAILS = ("ada@example.org", "zoe.angstrom@bücher.example", "a.very.long.mailbox@example.org")


def _calls(count: int) -> list[dict[str, str]]:
    return [
        {
            "certificate_uuid": str(uuid.uuid4()),
            "recipient_name": NAMES[index % len(NAMES)],
            "recipient_email": EMAILS[index % len(EMAILS)],
            "certificate_title": TITLES[index % len(TITLES)],
            "institution_name": "University of London",
            "verify_url": f"https://vault.example.org/verify/REF{index:09d}",
            "sender": "Certificate Vault <no-reply@example.org>",
            "message_id_domain": "vault.example.org",
        }
        for index in range(count)
    ]


def _median_us(items: list[object], action: Callable[[object], object]) -> float:
    timings = []
    for item in items:
        start = time.perf_counter_ns()
        action(item)
        timings.append(time.perf_counter_ns() - start)
    return statistics.median(timings) / 1000


def _compose(fields: object) -> compose.CertificateEmail:
    assert isinstance(fields, dict)
    return compose.compose_certificate_email(**fields)


def _build(fields: object) -> EmailMessage:
    assert isinstance(fields, dict)
    return compose.build_certificate_email(**fields)


def _direct_bytes(email: object) -> bytes:
    assert isinstance(email, compose.CertificateEmail)
    return email.as_bytes()


def _eml_bytes(message: object) -> bytes:
    assert isinstance(message, EmailMessage)
    return message.as_bytes()


def _smtp_path(message: object) -> object:
    assert isinstance(message, EmailMessage)
    send._envelope(message)  # what send_message reads before aiosmtplib flattens
    return flatten_message(message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    calls: list[object] = list(_calls(args.calls))
    _median_us(calls[:50], _build)  # warm caches and imports
    messages: list[object] = [_build(fields) for fields in calls]
    emails: list[object] = [_compose(fields) for fields in calls]
    results = {
        "compose_certificate_email": _median_us(calls, _compose),
        "CertificateEmail.as_bytes() (.eml)": _median_us(emails, _direct_bytes),
        "build_certificate_email (message)": _median_us(calls, _build),
        "message.as_bytes() (stdlib)": _median_us(messages, _eml_bytes),
        "envelope + aiosmtplib flatten": _median_us(messages, _smtp_path),
    }
    print(f"{args.calls} calls, median per call:")
    for label, value in results.items():
        print(f"  {label:<36}: {value:8.1f} µs")


if __name__ == "__main__":
    main()
