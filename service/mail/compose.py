"""Compose the email that gives a recipient the link to view and share their certificate.

Tenant-supplied text is cleaned before it reaches a header (no control characters, no RFC 2047
encoded-word openers) and HTML-escaped before it reaches the HTML part. The header fields come
from ``headers``, which encodes, folds and checks them itself: the header registry never runs.
"""

from __future__ import annotations

import binascii
import email.policy
import functools
import html
import re
import string
import unicodedata
import uuid
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from urllib.parse import urlsplit

import idna

from service.mail import headers

MAX_TEXT_CHARS = 255
MAX_LOCAL_PART_CHARS = 64
MAX_ADDRESS_CHARS = 254

# Explicit bidi embeddings/overrides/isolates: they can make "cert\u202efdp.exe" read as "exe.pdf".
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_BLANKED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
_DOT_ATOM = re.compile(rf"{headers.ATEXT}(?:\.{headers.ATEXT})*")
_SENDER = re.compile(r"\s*(?:(?P<name>[^<>]*?)\s*<(?P<addr>[^<>\s]+)>|(?P<bare>[^<>\s]+))\s*")

_POLICY = email.policy.SMTP
_MAX_BODY_LINE = 78
# how the stdlib generator finds a body's line ends (each is written as CRLF)
_LINE_END = re.compile(r"\r\n|\r|\n")

_TEXT_BODY = string.Template("""\
$greeting

$institution has issued you a certificate: "$title".

View and share it here:
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


def build_certificate_email(**fields: str) -> EmailMessage:
    """The certificate email (``compose_certificate_email``'s arguments) as a message."""
    return compose_certificate_email(**fields).as_message()


@dataclass(frozen=True, slots=True)
class CertificateEmail:
    """A composed certificate email: its checked header fields and its two text parts, each
    ``(Content-Type, Content-Transfer-Encoding, payload)``."""

    fields: list[headers.Field]
    boundary: str
    parts: tuple[tuple[headers.Field, headers.Field, str], ...]

    @property
    def message_id(self) -> str:
        return str(next(field for field in self.fields if field.name == "Message-ID"))

    def as_message(self) -> EmailMessage:
        """The message; its header fields are strings emitted exactly as checked (From and To
        also have ``addresses``); a field set afterwards goes through the stdlib as usual."""
        message = EmailMessage(policy=_POLICY)
        for field in self.fields:
            message.set_raw(field.name, field)
        for content_type, encoding, payload in self.parts:
            part = EmailMessage(policy=_POLICY)
            part.set_raw(content_type.name, content_type)
            part.set_raw(encoding.name, encoding)
            part.set_payload(payload)
            message.attach(part)
        return message

    def as_bytes(self) -> bytes:
        """The bytes the stdlib generates for ``as_message()`` (SMTP policy: CRLF line ends),
        written directly: a fifth of the time (``bench.mail_compose``; a test compares them)."""
        lines = [field.folded for field in self.fields]
        for content_type, encoding, payload in self.parts:
            lines += ["", f"--{self.boundary}", content_type.folded, encoding.folded, ""]
            lines.append(_LINE_END.sub("\r\n", payload).removesuffix("\r\n"))
        lines += ["", f"--{self.boundary}--", ""]
        return "\r\n".join(lines).encode("ascii")


def compose_certificate_email(
    *,
    certificate_uuid: str,
    recipient_name: str,
    recipient_email: str,
    certificate_title: str,
    institution_name: str,
    verify_url: str,
    sender: str,
    message_id_domain: str,
) -> CertificateEmail:
    """The certificate email, text and HTML; raises ValueError for an unusable address or URL."""
    recipient = make_address(recipient_email, display_name=recipient_name)
    fields = _body_fields(recipient_name, certificate_title, institution_name, verify_url)
    from_ = parse_sender(sender)
    certificate = _certificate_uuid(certificate_uuid)
    message_id = certificate_message_id(certificate_uuid, message_id_domain)
    # "=_" cannot occur in quoted-printable text; a 7bit body is checked for it.
    boundary = f"=_certificate_{certificate.hex}"
    header = headers.certificate_fields(
        sender=from_,
        recipient=recipient,
        subject=_header_text(fields.subject),
        message_id=message_id,
        boundary=boundary,
    )
    text = _text_part("plain", _TEXT_BODY.substitute(_text_values(fields)), boundary)
    html_part = _text_part("html", _HTML_BODY.substitute(_html_values(fields)), boundary)
    return CertificateEmail(header, boundary, (text, html_part))


def certificate_message_id(certificate_uuid: str, domain: str) -> str:
    """The deterministic Message-ID, so a duplicate send is recognisable as one."""
    normalized = _certificate_uuid(certificate_uuid)
    return f"<certificate-{normalized}@{ascii_domain(domain, field='message_id_domain')}>"


def clean_text(value: str, *, max_chars: int = MAX_TEXT_CHARS) -> str:
    """Blank out control and line-separator characters, drop bidi controls and lone surrogates,
    collapse whitespace runs to one space, and cap the length."""
    if value.isprintable():  # then it has none of the characters below, and " " is its only space
        return " ".join(value.split())[:max_chars].rstrip()
    kept = (
        " " if unicodedata.category(ch) in _BLANKED_CATEGORIES else ch
        for ch in value
        if ch not in _BIDI_CONTROLS and unicodedata.category(ch) != "Cs"
    )
    return " ".join("".join(kept).split())[:max_chars].rstrip()


@functools.lru_cache(maxsize=64)
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
    local, domain_ascii = _mailbox_parts(address, field=field)
    return Address(display_name=_header_text(display_name), username=local, domain=domain_ascii)


def is_deliverable(address: str) -> bool:
    """Whether an email can be sent to ``address``: what ``make_address`` accepts."""
    try:
        _mailbox_parts(address, field="email")
    except ValueError:
        return False
    return True


def _mailbox_parts(address: str, *, field: str) -> tuple[str, str]:
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
    return local, ascii_domain(domain, field=field)


@functools.lru_cache(maxsize=1024)
def ascii_domain(domain: str, *, field: str) -> str:
    """The domain in its ASCII form (IDNA 2008 with UTS 46 mapping); raises ValueError."""
    try:
        encoded = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError is a UnicodeError
        raise ValueError(f"{field}: the domain is not a valid host name") from None
    return encoded


def _certificate_uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ValueError("certificate_uuid: not a valid UUID") from None


def _header_text(value: str) -> str:
    # A decoder would act on an "=?charset?q?...?=" found in plain header text (Python's own
    # folder even re-emitted the newlines in it), so no encoded-word opener may survive.
    return clean_text(value).replace("=?", "= ?")


def _checked_url(url: str) -> str:
    if not (url.isascii() and url.isprintable() and " " not in url) and any(
        ch.isspace() or unicodedata.category(ch).startswith("C") for ch in url
    ):
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


def _text_part(subtype: str, body: str, boundary: str) -> tuple[headers.Field, headers.Field, str]:
    lines_fit = all(len(line) <= _MAX_BODY_LINE for line in body.splitlines())
    if body.isascii() and lines_fit and boundary not in body:
        encoding, payload = "7bit", body
    else:  # 7-bit clean either way, so a server without 8BITMIME takes it unchanged
        encoding = "quoted-printable"
        payload = binascii.b2a_qp(body.encode(), istext=True).decode("ascii")
    content_type = headers.simple_field("Content-Type", f'text/{subtype}; charset="utf-8"')
    return content_type, headers.simple_field("Content-Transfer-Encoding", encoding), payload
