"""SMTP delivery to in-process aiosmtpd (AUTH, TLS, failures), SMTP_URL parsing, .eml outbox."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from service.mail import send
from tests.mail_helpers import (
    CERT_UUID,
    MESSAGE_ID,
    RECIPIENT,
    VERIFY_URL,
    Sink,
    build,
    parse,
    parts,
    plain,
    smtp_server,
)

PASSWORD = "p@ss:w/rd x"
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


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


def test_many_emls_share_one_directory_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The jobs running at once write their messages together: each file fsynced before its
    rename, the directory once after them all (and, new, its parent)."""
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    outbox = tmp_path / "outbox"
    messages = [build(), build(), build()]
    for n, message in enumerate(messages):
        message.replace_header("Message-ID", f"<certificate-{n}@mail.example.org>")
    paths = send.write_emls([send.eml_file(message) for message in messages], outbox)
    names = [f"certificate-{n}@mail.example.org.eml" for n in range(3)]
    assert [path.name for path in paths] == names
    assert sorted(outbox.iterdir()) == paths
    assert [path.endswith(".eml.tmp") for path in synced] == [True] * 3 + [False] * 2
    assert synced[3:] == [str(outbox), str(tmp_path)]  # the new directory, then its parent
    synced.clear()
    send.write_emls([send.eml_file(messages[0])], outbox, parent_too=True)
    assert synced[1:] == [str(outbox), str(tmp_path)]  # a process's first write, the same


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
