"""Compose the email that gives a recipient the link to view and share their certificate.

Tenant-supplied text is cleaned before it reaches a header (no control characters, no RFC 2047
encoded-word openers) and HTML-escaped before it reaches the HTML part.
"""

from __future__ import annotations

import email.policy
import html
import re
import string
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime
from urllib.parse import urlsplit

import idna

MAX_TEXT_CHARS = 255
MAX_LOCAL_PART_CHARS = 64
MAX_ADDRESS_CHARS = 254

# Explicit bidi embeddings/overrides/isolates: they can make "cert\u202efdp.exe" read as "exe.pdf".
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_BLANKED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
_SENDER = re.compile(r"\s*(?:(?P<name>[^<>]*?)\s*<(?P<addr>[^<>\s]+)>|(?P<bare>[^<>\s]+))\s*")

_TEXT_BODY = string.Template("""\
$greeting

$institution has issued you a certificate: "$title".

View, download and share it here:
$url

Anyone you share this link with can check that the certificate is genuine.

This email was sent automatically; please do not reply.
""")

_HTML_BODY = string.Template("""\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>$subject</title></head>
<body style="font-family: sans-serif; line-height: 1.5;">
<p>$greeting</p>
<p>$institution has issued you a certificate: <strong>$title</strong>.</p>
<p><a href="$url">View and share your certificate</a></p>
<p>Or open this link in your browser:<br>$url</p>
<p>Anyone you share this link with can check that the certificate is genuine.</p>
<p style="color: #666666; font-size: 0.9em;">This email was sent automatically;
please do not reply.</p>
</body>
</html>
""")


@dataclass(frozen=True, slots=True, kw_only=True)
class _BodyFields:
    greeting: str
    title: str
    institution: str
    url: str
    subject: str


def build_certificate_email(
    *,
    certificate_uuid: str,
    recipient_name: str,
    recipient_email: str,
    certificate_title: str,
    institution_name: str,
    verify_url: str,
    sender: str,
    message_id_domain: str,
) -> EmailMessage:
    """The certificate email, text and HTML; raises ValueError for an unusable address or URL."""
    recipient = make_address(recipient_email, display_name=recipient_name)
    fields = _body_fields(recipient_name, certificate_title, institution_name, verify_url)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = parse_sender(sender)
    message["To"] = recipient
    message["Subject"] = _header_text(fields.subject)
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = certificate_message_id(certificate_uuid, message_id_domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(_TEXT_BODY.substitute(_text_values(fields)))
    message.add_alternative(_HTML_BODY.substitute(_html_values(fields)), subtype="html")
    _check_serialized_headers(message, recipient)
    return message


def certificate_message_id(certificate_uuid: str, domain: str) -> str:
    """The deterministic Message-ID, so a duplicate send is recognisable as one."""
    try:
        normalized = uuid.UUID(certificate_uuid)
    except ValueError:
        raise ValueError("certificate_uuid: not a valid UUID") from None
    return f"<certificate-{normalized}@{ascii_domain(domain, field='message_id_domain')}>"


def clean_text(value: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Blank out control and line-separator characters, drop bidi controls and lone surrogates,
    collapse whitespace runs to one space, and cap the length."""
    kept = (
        " " if unicodedata.category(ch) in _BLANKED_CATEGORIES else ch
        for ch in value
        if ch not in _BIDI_CONTROLS and unicodedata.category(ch) != "Cs"
    )
    return " ".join("".join(kept).split())[:max_chars].rstrip()


def parse_sender(value: str) -> Address:
    """``Name <local@domain>`` or a bare address, e.g. the configured From; raises ValueError."""
    match = _SENDER.fullmatch(value)
    if match is None:
        raise ValueError("sender: expected 'Name <local@domain>' or 'local@domain'")
    name = (match["name"] or "").strip().strip('"')
    return make_address(match["addr"] or match["bare"], display_name=name, field="sender")


def make_address(
    address: str, *, display_name: str = "", field: str = "recipient_email"
) -> Address:
    """A header-safe mailbox with an ASCII (IDNA-encoded) domain; raises ValueError otherwise.

    A non-ASCII local part would need SMTPUTF8 end to end, so it is rejected rather than guessed.
    """
    local, at, domain = address.rpartition("@")
    if not at or not local or len(address) > MAX_ADDRESS_CHARS:
        raise ValueError(f"{field}: not an email address (expected local@domain)")
    if not local.isascii():
        raise ValueError(
            f"{field}: the part before the @ contains non-ASCII characters, which would need "
            "SMTPUTF8; such addresses are not supported"
        )
    if len(local) > MAX_LOCAL_PART_CHARS or not _DOT_ATOM.fullmatch(local):
        raise ValueError(f"{field}: the part before the @ is not a valid mailbox name")
    domain_ascii = ascii_domain(domain, field=field)
    return Address(display_name=_header_text(display_name), username=local, domain=domain_ascii)


def ascii_domain(domain: str, *, field: str) -> str:
    """The domain in its ASCII form (IDNA 2008 with UTS 46 mapping); raises ValueError."""
    try:
        encoded = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError is a UnicodeError
        raise ValueError(f"{field}: the domain is not a valid host name") from None
    return encoded


def _header_text(value: str) -> str:
    # Python's header folder decodes "=?charset?q?...?=" it finds in plain text, newlines
    # included (CPython 3.11.7 re-emits them raw), so no encoded-word opener may survive.
    return clean_text(value).replace("=?", "= ?")


def _checked_url(url: str) -> str:
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in url):
        raise ValueError("verify_url: must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError("verify_url: not a valid URL") from None
    if parts.scheme not in {"http", "https"} or not host:
        raise ValueError("verify_url: must be an absolute http:// or https:// URL")
    return url


def _body_fields(name: str, title: str, institution: str, verify_url: str) -> _BodyFields:
    clean_name = clean_text(name)
    clean_title = clean_text(title) or "Certificate"
    clean_institution = clean_text(institution) or "Your issuer"
    return _BodyFields(
        greeting=f"Hello {clean_name}," if clean_name else "Hello,",
        title=clean_title,
        institution=clean_institution,
        url=_checked_url(verify_url),
        subject=f'Your certificate "{clean_title}" from {clean_institution}',
    )


def _text_values(fields: _BodyFields) -> dict[str, str]:
    return {
        "greeting": fields.greeting,
        "title": fields.title,
        "institution": fields.institution,
        "url": fields.url,
    }


def _html_values(fields: _BodyFields) -> dict[str, str]:
    values = {**_text_values(fields), "subject": fields.subject}
    return {key: html.escape(value, quote=True) for key, value in values.items()}


def _check_serialized_headers(message: EmailMessage, recipient: Address) -> None:
    # Defence in depth against the stdlib's header-folding bugs (python/cpython#121650 and
    # friends): what a receiver parses must be exactly the headers and recipient we set.
    parsed = BytesHeaderParser(policy=email.policy.default).parsebytes(message.as_bytes())
    sent_names = sorted(name.lower() for name in parsed)
    if sent_names != sorted(name.lower() for name in message):
        raise ValueError("the composed headers do not survive serialisation unchanged")
    sent_to = [address.addr_spec for address in parsed["To"].addresses]
    if sent_to != [recipient.addr_spec]:
        raise ValueError("the composed To header does not survive serialisation unchanged")
