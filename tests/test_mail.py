"""Recipient email: composition (headers, parts, injection), SMTP delivery to a real in-process
aiosmtpd server (plain, AUTH, STARTTLS, implicit TLS, failures), URL parsing and .eml output."""

from __future__ import annotations

import asyncio
import copy
import datetime
import email
import email.policy
import ipaddress
import pickle
import random
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import pytest
from aiosmtpd.smtp import SMTP as SmtpServerProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from aiosmtplib.email import flatten_message

from service.mail import compose, headers, send

CERT_UUID = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
MESSAGE_ID = f"<certificate-{CERT_UUID}@mail.example.org>"
RECIPIENT = "ada@example.org"
VERIFY_URL = "https://vault.example.org/verify/AB12CD34EF56"
PASSWORD = "p@ss:w/rd x"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
INTENDED_HEADERS = {"from", "to", "subject", "date", "message-id", "auto-submitted"}
MIME_HEADERS = {"mime-version", "content-type"}


def build(**overrides: str) -> EmailMessage:
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
    return compose.build_certificate_email(**(fields | overrides))


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
    raw = build(**{field: value}).as_bytes()
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


# --- delivery ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink", "permanent", "code"),
    [
        (Sink(rcpt_reply="550 5.1.1 No such user"), True, 550),
        (Sink(data_reply="554 5.7.1 Message rejected as spam"), True, 554),
        (Sink(rcpt_reply="451 4.3.0 Try again later"), False, 451),
    ],
)
async def test_server_rejection_is_classified(sink: Sink, permanent: bool, code: int) -> None:
    async with smtp_server(sink) as port:
        with pytest.raises(send.MailError) as caught:
            await send.send_message(build(), plain(port))
    assert (caught.value.permanent, caught.value.smtp_code) == (permanent, code)
    assert str(code) in str(caught.value)


async def test_connection_refused_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(send.MailError, match="could not connect") as caught:
        await send.send_message(build(), plain(port))
    assert caught.value.permanent is False


async def test_silent_server_times_out_as_transient() -> None:
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"smtp://127.0.0.1:{port}?starttls=false&timeout=0.2"
    try:
        with pytest.raises(send.MailError, match="in time") as caught:
            await send.send_message(build(), send.parse_smtp_url(url))
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert caught.value.permanent is False


def authenticator(
    server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    expected = LoginPassword(b"mailer", PASSWORD.encode())
    ok = isinstance(data, LoginPassword) and tuple(data) == expected
    # handled=False: aiosmtpd then sends the 535 reply itself.
    return AuthResult(success=ok, handled=False)


async def test_authenticated_smtp_with_percent_encoded_credentials() -> None:
    sink = Sink()
    async with smtp_server(sink, authenticator=authenticator, auth_require_tls=False) as port:
        await send.send_message(build(), plain(port, "mailer:p%40ss%3Aw%2Frd%20x@"))
    session, envelope, _ = sink.only()
    assert session.authenticated is True
    assert envelope.rcpt_tos == [RECIPIENT]


async def test_wrong_password_fails_permanently() -> None:
    sink = Sink()
    async with smtp_server(sink, authenticator=authenticator, auth_require_tls=False) as port:
        with pytest.raises(send.MailError, match="login") as caught:
            await send.send_message(build(), plain(port, "mailer:wrong@"))
    assert caught.value.permanent is True
    assert sink.accepted == []


# --- TLS -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (EC P-256: generated in milliseconds)."""
    x509 = pytest.importorskip("cryptography.x509", reason="needs the cryptography package")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "vault test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    return context


async def test_smtp_url_upgrades_with_starttls(
    server_tls: ssl.SSLContext, tls_files: tuple[Path, Path]
) -> None:
    sink = Sink()
    async with smtp_server(sink, tls_context=server_tls, require_starttls=True) as port:
        url = f"smtp://127.0.0.1:{port}?ca_file={tls_files[0]}&timeout=5"
        await send.send_message(build(), send.parse_smtp_url(url))
        unverified = f"smtp://127.0.0.1:{port}?tls_verify=false&timeout=5"
        await send.send_message(build(), send.parse_smtp_url(unverified))
    assert len(sink.accepted) == 2
    assert all(session.ssl is not None for session, _ in sink.accepted)


async def test_untrusted_certificate_is_refused(server_tls: ssl.SSLContext) -> None:
    sink = Sink()
    async with smtp_server(sink, tls_context=server_tls, require_starttls=True) as port:
        url = f"smtp://127.0.0.1:{port}?timeout=5"
        with pytest.raises(send.MailError) as caught:
            await send.send_message(build(), send.parse_smtp_url(url))
    assert caught.value.permanent is False
    assert sink.accepted == []


async def test_smtp_url_never_falls_back_to_plaintext() -> None:
    sink = Sink()
    async with smtp_server(sink) as port:
        url = f"smtp://127.0.0.1:{port}?timeout=5"
        with pytest.raises(send.MailError, match="STARTTLS") as caught:
            await send.send_message(build(), send.parse_smtp_url(url))
    assert caught.value.permanent is False
    assert sink.accepted == []


async def test_smtps_url_uses_implicit_tls(
    server_tls: ssl.SSLContext, tls_files: tuple[Path, Path]
) -> None:
    sink = Sink()
    async with smtp_server(sink, implicit_tls=server_tls) as port:
        url = f"smtps://127.0.0.1:{port}?ca_file={tls_files[0]}&timeout=5"
        await send.send_message(build(), send.parse_smtp_url(url))
    assert sink.only()[1].rcpt_tos == [RECIPIENT]


# --- SMTP URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", {"host": "mail.example.org", "port": 587, "tls": "starttls"}),
        ("SMTP://mail.example.org/", {"port": 587, "tls": "starttls", "tls_verify": True}),
        ("smtp://mail.example.org?starttls=false", {"port": 25, "tls": "none"}),
        ("smtp://mail.example.org:2525?starttls=true", {"port": 2525, "tls": "starttls"}),
        ("smtps://u:p@mail.example.org", {"port": 465, "tls": "implicit", "username": "u"}),
        (
            "smtp://us%40er:p%3Aa%2Fss%20w@[::1]:2525?timeout=2.5",
            {"host": "::1", "username": "us@er", "password": "p:a/ss w", "timeout_s": 2.5},
        ),
        ("smtp://h?ca_file=/etc/ssl/ca.pem", {"ca_file": "/etc/ssl/ca.pem", "timeout_s": 30.0}),
        ("smtps://h?tls_verify=false", {"tls_verify": False, "username": None}),
    ],
)
def test_parse_smtp_url(url: str, expected: dict[str, object]) -> None:
    settings = send.parse_smtp_url(url)
    assert {key: getattr(settings, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://mail.example.org", "smtp:// or smtps://"),
        ("mail.example.org", "smtp:// or smtps://"),
        ("smtp://", "host"),
        ("smtp://h:99999", "port"),
        ("smtp://h:abc", "port"),
        ("smtp://h:0", "port"),
        ("smtp://[::1", "malformed"),
        ("smtp://h/path", "path"),
        ("smtp://h#frag", "path"),
        ("smtp://h x", "whitespace"),
        ("smtp://h?starttls=maybe", "starttls must be true or false"),
        ("smtps://h?starttls=true", "does not apply"),
        ("smtp://h?timeout=0", "timeout"),
        ("smtp://h?timeout=abc", "timeout"),
        ("smtp://h?timeout=nan", "timeout"),
        ("smtp://h?timeout=inf", "timeout"),
        ("smtp://h?verbose=1", "unknown option 'verbose'"),
        ("smtp://h?timeout=1&timeout=2", "twice"),
        ("smtp://u@h", "password"),
        ("smtp://:p@h", "user name"),
        ("smtp://h?starttls=false&tls_verify=false", "need TLS"),
        ("smtp://h?tls_verify=false&ca_file=/ca.pem", "no effect"),
    ],
)
def test_bad_smtp_url_is_a_clear_value_error(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        send.parse_smtp_url(url)


def test_password_never_shows() -> None:
    assert "s3cr3t" not in repr(send.parse_smtp_url("smtp://u:s3cr3t@h"))
    with pytest.raises(ValueError) as caught:
        send.parse_smtp_url("smtp://u:s3cr3t@h:bad")
    assert "s3cr3t" not in str(caught.value)


# --- local outbox --------------------------------------------------------------------------


def test_write_eml_is_atomic_idempotent_and_parseable(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    first = send.write_eml(build(), outbox)
    second = send.write_eml(build(certificate_title="Second Draft"), outbox)
    assert first == second == outbox / f"certificate-{CERT_UUID}@mail.example.org.eml"
    assert list(outbox.iterdir()) == [first]
    message = parse(first.read_bytes())
    assert message["Message-ID"].strip() == MESSAGE_ID
    text, html = parts(message)
    assert "Second Draft" in text and VERIFY_URL in html


def test_write_eml_file_name_stays_inside_the_directory(tmp_path: Path) -> None:
    message = build()
    message.replace_header("Message-ID", "<../../etc/passwd>")
    path = send.write_eml(message, tmp_path)
    assert path.parent == tmp_path and path.name == "_.._etc_passwd.eml"


def test_write_eml_needs_a_message_id(tmp_path: Path) -> None:
    message = build()
    del message["Message-ID"]
    with pytest.raises(ValueError, match="Message-ID"):
        send.write_eml(message, tmp_path)
    assert list(tmp_path.iterdir()) == []
