"""Mail composition: headers, text and HTML parts, header/HTML injection, input validation."""

from __future__ import annotations

from typing import cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.mail import compose, send
from tests.mail_helpers import (
    CERT_UUID,
    INTENDED_HEADERS,
    MESSAGE_ID,
    MIME_HEADERS,
    RECIPIENT,
    VERIFY_URL,
    Sink,
    build,
    composed,
    parse,
    parts,
    plain,
    smtp_server,
)

# --- composition ---------------------------------------------------------------------------


async def test_delivered_message_has_headers_parts_and_link() -> None:
    sink = Sink()
    async with smtp_server(sink) as port:
        await send.send_message(build(), plain(port))
    _, envelope, message = sink.only()
    assert envelope.mail_from == "no-reply@example.org"
    assert envelope.rcpt_tos == [RECIPIENT]
    assert message["From"].addresses[0].display_name == "Certificate Vault"
    assert message["To"].addresses[0].display_name == "Zoë Ångström"
    assert message["To"].addresses[0].addr_spec == RECIPIENT
    assert (
        message["Subject"] == 'Your certificate "Analytical Engines 101" from University of London'
    )
    # The header is folded at 78 columns and the stdlib parser keeps the folding space.
    assert message["Message-ID"].strip() == MESSAGE_ID
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"].datetime.tzinfo is not None
    text, html = parts(message)
    for body in (text, html):
        assert "Hello Zoë Ångström," in body
        assert "Analytical Engines 101" in body and "University of London" in body
    assert VERIFY_URL in text
    assert f'<a href="{VERIFY_URL}">' in html


def test_message_id_is_derived_from_the_certificate() -> None:
    again = build(certificate_uuid=CERT_UUID.upper(), certificate_title="Other")
    assert build()["Message-ID"] == again["Message-ID"] == MESSAGE_ID
    assert compose.certificate_message_id(CERT_UUID, "mail.example.org") == MESSAGE_ID


HOSTILE = [
    "Bob\r\nBcc: evil@example.net",
    "Bob\nBcc: evil@example.net",
    "Bob\rBcc: evil@example.net",
    "Bob\x00Bcc: evil@example.net",
    "Bob\u2028Bcc: evil@example.net\u0085Cc: evil2@example.net",
    "=?utf-8?q?=0D=0ABcc:_evil@example.net?=",
    '"Bob" <evil@example.net>, other@example.net',
    "Bob\ud800\u202e",
    "Bob " * 3000,
]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("field", ["recipient_name", "certificate_title", "institution_name"])
def test_header_injection_is_impossible(field: str, value: str) -> None:
    raw = composed(**{field: value}).as_bytes()
    message = parse(raw)
    assert {name.lower() for name in message} == INTENDED_HEADERS | MIME_HEADERS
    assert [address.addr_spec for address in message["To"].addresses] == [RECIPIENT]
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc" not in header_block and b"\r\nCc" not in header_block


async def test_injected_bcc_does_not_reach_the_smtp_envelope() -> None:
    sink = Sink()
    async with smtp_server(sink) as port:
        await send.send_message(build(recipient_name="Bob\r\nBcc: evil@x"), plain(port))
    _, envelope, message = sink.only()
    assert envelope.rcpt_tos == [RECIPIENT]
    assert "Bcc" not in message and "Cc" not in message
    header_lines = cast(bytes, envelope.content).split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert not [line for line in header_lines if line.lower().startswith(b"bcc")]


def test_markup_is_escaped_in_the_html_part() -> None:
    message = build(
        recipient_name="<script>alert(1)</script>",
        certificate_title='"><img src=x onerror=alert(1)>',
        institution_name="Smith & <b>Sons</b>",
        verify_url='https://vault.example.org/verify/a"onmouseover="alert(1)',
    )
    text, html = parts(message)
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Smith &amp; &lt;b&gt;Sons&lt;/b&gt;" in html
    assert 'href="https://vault.example.org/verify/a&quot;onmouseover=&quot;alert(1)"' in html
    assert "<script>alert(1)</script>" in text  # plain text is inert as it is


def test_bidi_controls_are_dropped() -> None:
    text, _ = parts(build(recipient_name="\u202eBob\u2066"))
    assert "Hello Bob," in text


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://vault.example.org/verify/x",
        "//vault.example.org/verify/x",
        "https://",
        "",
        "https://vault.example.org/verify/x\r\nBcc: evil@x",
        " https://vault.example.org/verify/x",
        "http://[::1/verify",
    ],
)
def test_verify_url_must_be_http(url: str) -> None:
    with pytest.raises(ValueError, match="verify_url"):
        build(verify_url=url)


def test_idn_domain_is_punycoded() -> None:
    message = parse(build(recipient_email="anna@Bücher.example").as_bytes())
    assert message["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("jörg@example.org", "SMTPUTF8"),
        ("no-at-sign", "not an email address"),
        ("@example.org", "not an email address"),
        ("bob@", "not a valid host name"),
        ("bob smith@example.org", "not a valid mailbox"),
        ('"quoted"@example.org', "not a valid mailbox"),
        ("bob@@example.org", "not a valid mailbox"),
        ("a" * 65 + "@example.org", "not a valid mailbox"),
        ("bob@exa mple.org", "not a valid host name"),
        ("bob@example..org", "not a valid host name"),
        ("bob@example.org\r\nBcc: evil@x", "not a valid mailbox"),
        ("bob@example.org\r\n", "not a valid host name"),
        ("bob@[127.0.0.1]", "not a valid host name"),
    ],
)
def test_unusable_recipient_address_is_rejected_cleanly(address: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        build(recipient_email=address)


@pytest.mark.parametrize(
    ("sender", "name", "addr_spec"),
    [
        ("Certificate Vault <no-reply@example.org>", "Certificate Vault", "no-reply@example.org"),
        ('"Vault, Inc." <no-reply@example.org>', "Vault, Inc.", "no-reply@example.org"),
        ("no-reply@example.org", "", "no-reply@example.org"),
    ],
)
def test_sender_forms(sender: str, name: str, addr_spec: str) -> None:
    [address] = parse(build(sender=sender).as_bytes())["From"].addresses
    assert (address.display_name, address.addr_spec) == (name, addr_spec)


@pytest.mark.parametrize(
    "overrides",
    [
        {"sender": "Certificate Vault"},
        {"sender": "A <a@example.org> <b@example.org>"},
        {"certificate_uuid": "not-a-uuid"},
        {"message_id_domain": "exa mple.org"},
    ],
)
def test_bad_configuration_values_raise_value_error(overrides: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        build(**overrides)


# --- the bytes written directly ---------------------------------------------------------------

ODD = [
    "Zoë Ångström",
    "Plain Name",
    "=_certificate_6f9619ff8b86d011b42d00c04fc964ff",
    "A title long enough that its line in the text part passes seventy-eight columns, by far",
    "<b>bold</b> & 'quoted' \"double\"",
    "tab\tand\x0bvertical\x0cfeed",
    "日本語の証明書 " * 12,
    "😀 emoji",
    "",
]


@pytest.mark.parametrize("value", HOSTILE + ODD)
@pytest.mark.parametrize("field", ["recipient_name", "certificate_title", "institution_name"])
def test_the_bytes_written_directly_are_the_ones_the_stdlib_generates(
    field: str, value: str
) -> None:
    """``.eml`` files are written from ``CertificateEmail.as_bytes``, which skips building the
    message and running the stdlib's generator: byte for byte the same (Date included)."""
    email = composed(**{field: value})
    assert email.as_bytes() == email.as_message().as_bytes()


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=300), title=st.text(min_size=1, max_size=300))
def test_the_bytes_written_directly_match_for_any_text(name: str, title: str) -> None:
    email = composed(recipient_name=name, certificate_title=title)
    assert email.as_bytes() == email.as_message().as_bytes()
    assert parse(email.as_bytes())["Message-ID"].strip() == email.message_id == MESSAGE_ID
