"""Mail header encoding: hand-built fields emitted verbatim, round trips, final header check."""

from __future__ import annotations

import copy
import email
import email.policy
import pickle
import random
from email.header import decode_header, make_header
from email.headerregistry import Address

import pytest
from aiosmtplib.email import flatten_message

from service.mail import compose, headers, send
from tests.mail_helpers import (
    INTENDED_HEADERS,
    MESSAGE_ID,
    MIME_HEADERS,
    RECIPIENT,
    VERIFY_URL,
    Sink,
    build,
    parse,
    parts,
    plain,
    smtp_server,
)

# --- header encoding: built by hand, emitted verbatim -----------------------------------------

VARIED_NAMES = [
    "Ada Lovelace",
    "Dr. Grace O'Brien-Hopper, PhD",
    'Bob "the \\ builder"',
    "under_score a=?b ?= c",
    "emoji 😀, e\u0301 and \u05d0\u05d1",
    "李小龙 " * 40,
    "Zoë Ångström " * 20,
    "x" * 120,
]
_FUZZ_ALPHABET = [*"aZ09 _=?\"\\'(),.:;<>@[]!*+-/#$%&^`{|}~\t\r\n\x00", *"éÅ李😀\u0301\u202e\u2028"]


def fuzzed_names(count: int) -> list[str]:
    rng = random.Random(20240701)
    return [
        "".join(rng.choice(_FUZZ_ALPHABET) for _ in range(rng.choice([3, 30, 300])))
        for _ in range(count)
    ]


def rfc2047_display_name(raw: bytes) -> str:
    """The To display name as an RFC 2047 decoder reads it. Python's address parser keeps the
    space between two adjacent encoded words, which RFC 2047 (section 6.2) says to drop."""
    [address] = parse(raw)["To"].addresses
    value = email.message_from_bytes(raw, policy=email.policy.compat32)["To"].replace("\r\n", "")
    if "=?" not in value:
        return str(address.display_name)
    return str(make_header(decode_header(value))).removesuffix(f" <{address.addr_spec}>")


@pytest.mark.parametrize("name", VARIED_NAMES + fuzzed_names(150))
def test_header_text_round_trips_exactly(name: str) -> None:
    raw = build(recipient_name=name, certificate_title=name, institution_name="Inst").as_bytes()
    message = parse(raw)
    assert {key.lower() for key in message} == INTENDED_HEADERS | MIME_HEADERS
    assert [address.addr_spec for address in message["To"].addresses] == [RECIPIENT]
    assert not message["To"].defects and not message["Subject"].defects
    expected_name = compose.make_address(RECIPIENT, display_name=name).display_name
    assert rfc2047_display_name(raw) == expected_name
    title = compose.clean_text(name) or "Certificate"
    subject = compose.clean_text(f'Your certificate "{title}" from Inst')  # capped again
    assert message["Subject"] == subject.replace("=?", "= ?")
    text, _ = parts(message)
    assert f'certificate: "{title}"' in text
    header_lines = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in header_lines) <= 76  # RFC 2047's limit for encoded words


@pytest.mark.parametrize(
    ("name", "to_line"),
    [
        ("Ada Lovelace", b"To: Ada Lovelace <ada@example.org>"),
        ("Vault, Inc.", b'To: "Vault, Inc." <ada@example.org>'),
        ('Bob "B" \\ Smith', b'To: "Bob \\"B\\" \\\\ Smith" <ada@example.org>'),
        ("Zoë_Å", b"To: =?utf-8?q?Zo=C3=AB=5F=C3=85?= <ada@example.org>"),
        ("\u202e", b"To: ada@example.org"),
    ],
)
def test_display_name_forms(name: str, to_line: bytes) -> None:
    assert to_line + b"\r\n" in build(recipient_name=name).as_bytes()


@pytest.mark.parametrize("name", VARIED_NAMES[:6])
def test_every_serialiser_emits_the_same_7bit_bytes(name: str) -> None:
    message = build(recipient_name=name, certificate_title=name)
    raw = message.as_bytes()
    assert raw.isascii()  # quoted-printable bodies: no 8BITMIME needed
    assert flatten_message(message) == raw  # what aiosmtplib sends
    assert flatten_message(message, cte_type="7bit") == raw
    # The fields carry their own folding, so no policy refolds them.
    assert message.as_bytes(policy=email.policy.SMTP.clone(max_line_length=20)) == raw
    assert pickle.loads(pickle.dumps(message)).as_bytes() == raw
    assert copy.deepcopy(message).as_bytes() == raw


def test_built_message_reads_like_a_parsed_one() -> None:
    message = build()
    assert [address.addr_spec for address in message["To"].addresses] == [RECIPIENT]
    assert message["To"].addresses[0].display_name == "Zoë Ångström"
    assert message["Subject"] == parse(message.as_bytes())["Subject"]
    text, html = parts(message)
    assert "Hello Zoë Ångström," in text and VERIFY_URL in html


async def test_long_address_is_sent_verbatim_and_intact() -> None:
    address = f"{'a' * 64}@{'b' * 60}.example.org"
    message = build(recipient_email=address, recipient_name="Zoë " * 30)
    sink = Sink()
    async with smtp_server(sink) as port:
        await send.send_message(message, plain(port))
    _, envelope, received = sink.only()
    assert envelope.rcpt_tos == [address]
    assert [mailbox.addr_spec for mailbox in received["To"].addresses] == [address]
    assert envelope.content == message.as_bytes()  # a line over 78 characters, not refolded


def test_tenant_text_cannot_start_a_line_with_the_boundary() -> None:
    boundary = build().get_boundary()
    assert boundary
    raw = build(recipient_name="Ada", institution_name=f"--{boundary}--").as_bytes()
    # RFC 2046: not even as a line's prefix, which some parsers take as a delimiter.
    delimiters = [line for line in raw.split(b"\r\n") if line.startswith(f"--{boundary}".encode())]
    assert delimiters == [f"--{boundary}".encode()] * 2 + [f"--{boundary}--".encode()]
    message = parse(raw)
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "text/html",
    ]
    text, _ = parts(message)
    assert f"\n--{boundary}-- has issued you" in text


def checked_fields() -> tuple[list[headers.Field], Address, Address]:
    sender = compose.parse_sender("Vault <no-reply@example.org>")
    recipient = compose.make_address(RECIPIENT, display_name="Ada")
    fields = headers.certificate_fields(
        sender=sender, recipient=recipient, subject="Hi", message_id=MESSAGE_ID, boundary="b"
    )
    return fields, sender, recipient


@pytest.mark.parametrize(
    ("index", "folded"),
    [
        (2, "Subject: Hi\r\nBcc: evil@example.net"),
        (2, "Subject: Hi\nBcc: evil@example.net"),
        (2, "Subject: Hi\r\n\tBcc: evil@example.net"),
        (2, "Subject: Hi\r\n "),
        (2, "Subject: H\x00i"),
        (2, "Subject: " + "i" * 990),
        (1, f"To: {RECIPIENT}, evil@example.net"),
        (1, f"To: Ada <evil@example.net>\r\n <{RECIPIENT}>"),
        (1, f"To: Ada (<{RECIPIENT}>) <evil@example.net>"),
        (1, "To: evil@example.net"),
        (0, "From: Vault <no-reply@example.org>, <evil@example.net>"),
    ],
)
def test_header_check_refuses_an_added_field_or_recipient(index: int, folded: str) -> None:
    fields, sender, recipient = checked_fields()
    original = fields[index]
    if isinstance(original, headers.MailboxField):
        fields[index] = headers.MailboxField(original.name, original, folded, original.mailbox)
    else:
        fields[index] = headers.Field(original.name, original, folded)
    with pytest.raises(ValueError, match="composed"):
        headers.check_fields(fields, sender, recipient)
