"""Deliver a composed email over SMTP, or write it to a local outbox directory as a .eml file.

``SMTP_URL`` forms (credentials percent-decoded):

- ``smtp://[user:pass@]host[:port]``: STARTTLS is *required* (never silently plaintext);
  default port 587.
- ``smtp://...?starttls=false``: plaintext, for a local relay or a dev catcher; default port 25.
  Credentials then travel unencrypted.
- ``smtps://[user:pass@]host[:port]``: TLS from the first byte (implicit TLS); default port 465.

Query options: ``timeout`` (seconds per SMTP step, default 30), ``ca_file`` (a PEM bundle to trust
instead of the system CAs, e.g. a private CA) and ``tls_verify=false`` (accept any server
certificate: for tests only, as it allows a man in the middle). Unknown options are an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.headerregistry import AddressHeader
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import aiosmtplib

from service.files.durable import write_files_atomically
from service.mail import compose

DEFAULT_TIMEOUT_S = 30.0
MAX_SERVER_TEXT_CHARS = 200
MAX_EML_STEM_CHARS = 200
EML_TEMP_SUFFIX = ".eml.tmp"

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_QUERY_KEYS = frozenset({"starttls", "timeout", "tls_verify", "ca_file"})
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9@._+-]")
# A 5xx at these stages is about the server, not this message: worth retrying later.
_SERVER_LEVEL_REPLIES = (aiosmtplib.SMTPConnectResponseError, aiosmtplib.SMTPHeloError)
_STAGES: tuple[tuple[type[aiosmtplib.SMTPResponseException], str], ...] = (
    (aiosmtplib.SMTPRecipientRefused, "recipient"),
    (aiosmtplib.SMTPSenderRefused, "sender"),
    (aiosmtplib.SMTPDataError, "message"),
    (aiosmtplib.SMTPAuthenticationError, "login"),
    (aiosmtplib.SMTPHeloError, "greeting"),
    (aiosmtplib.SMTPConnectResponseError, "connection"),
)


class TlsMode(StrEnum):
    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    NONE = "none"


_DEFAULT_PORTS = {TlsMode.IMPLICIT: 465, TlsMode.STARTTLS: 587, TlsMode.NONE: 25}


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpSettings:
    host: str
    port: int
    tls: TlsMode = TlsMode.STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_s: float = DEFAULT_TIMEOUT_S
    tls_verify: bool = True
    ca_file: str | None = None


class MailError(Exception):
    """A failed delivery. ``permanent``: retrying cannot help (a 5xx reply to this message, or
    an address SMTP cannot carry); otherwise retry with backoff (network, TLS, 4xx, timeouts)."""

    def __init__(self, message: str, *, permanent: bool, smtp_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.smtp_code = smtp_code


def parse_smtp_url(url: str) -> SmtpSettings:
    """Settings from an ``smtp://`` or ``smtps://`` URL; raises ValueError naming the problem.

    Error messages never repeat the URL, which may hold a password.
    """
    parts = _split_url(url)
    options = _query_options(parts.query)
    tls = _tls_mode(parts.scheme, options.get("starttls"))
    username, password = _credentials(parts)
    settings = SmtpSettings(
        host=parts.hostname or "",
        port=_port(parts) or _DEFAULT_PORTS[tls],
        tls=tls,
        username=username,
        password=password,
        timeout_s=_timeout_s(options.get("timeout")),
        tls_verify=_flag(options.get("tls_verify"), "tls_verify", default=True),
        ca_file=options.get("ca_file") or None,
    )
    if tls is TlsMode.NONE and (settings.ca_file or not settings.tls_verify):
        raise ValueError("SMTP URL: ca_file and tls_verify need TLS, but starttls=false")
    if settings.ca_file and not settings.tls_verify:
        raise ValueError("SMTP URL: ca_file has no effect with tls_verify=false")
    return settings


async def send_message(message: EmailMessage, smtp: SmtpSettings) -> None:
    """Deliver to the message's To addresses; raises MailError (``permanent`` or not)."""
    sender, recipients = _envelope(message)
    try:
        await aiosmtplib.send(
            message,
            sender=sender,
            recipients=recipients,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            timeout=smtp.timeout_s,
            use_tls=smtp.tls is TlsMode.IMPLICIT,
            start_tls=smtp.tls is TlsMode.STARTTLS,
            validate_certs=smtp.tls_verify,
            cert_bundle=smtp.ca_file,
        )
    except (aiosmtplib.SMTPException, OSError, TimeoutError, ValueError) as exc:
        raise _mail_error(exc) from exc


def write_eml(message: EmailMessage, directory: Path) -> Path:
    """Write ``<Message-ID>.eml`` atomically (temp file + rename); the same Message-ID, so the
    same certificate, overwrites the same file. Blocking: run it in a thread."""
    (path,) = write_emls([eml_file(message)], directory)
    return path


def eml_file(message: EmailMessage) -> tuple[str, bytes]:
    """The ``.eml`` file of a message: its name (after its Message-ID) and its bytes. Raises
    ValueError for a message without a Message-ID."""
    return eml_name(str(message.get("Message-ID", ""))), message.as_bytes()


def write_emls(
    files: Sequence[tuple[str, bytes]],
    directory: Path,
    *,
    scratch: Path | None = None,
    parent_too: bool = False,
) -> list[Path]:
    """``.eml`` files (``eml_file``) written atomically (by way of a temp file in ``scratch``,
    if given), the directory fsynced once for them all (and its parent with ``parent_too``: a
    process's first write, as another process may have made the directory and died before
    making its entry durable)."""
    return write_files_atomically(
        directory, files, prefix=".", suffix=EML_TEMP_SUFFIX, scratch=scratch, parent_too=parent_too
    )


def _split_url(url: str) -> SplitResult:
    url = url.strip()
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        raise ValueError("SMTP URL: must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("SMTP URL: malformed (check the brackets around an IPv6 host)") from None
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError("SMTP URL: must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("SMTP URL: a host is required, e.g. smtp://mail.example.org")
    if parts.path not in {"", "/"} or parts.fragment:
        raise ValueError("SMTP URL: must not have a path or #fragment after the host")
    return parts


def _port(parts: SplitResult) -> int | None:
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("SMTP URL: the port must be a number from 1 to 65535")
    return port


def _query_options(query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _QUERY_KEYS:
            known = ", ".join(sorted(_QUERY_KEYS))
            raise ValueError(f"SMTP URL: unknown option {key[:40]!r} (known: {known})")
        if key in options:
            raise ValueError(f"SMTP URL: option {key} is given twice")
        options[key] = value
    return options


def _flag(value: str | None, key: str, *, default: bool) -> bool:
    if value is None:
        return default
    flag = _BOOLEANS.get(value.lower())
    if flag is None:
        raise ValueError(f"SMTP URL: {key} must be true or false")
    return flag


def _tls_mode(scheme: str, starttls: str | None) -> TlsMode:
    if scheme == "smtps":
        if starttls is not None:
            raise ValueError("SMTP URL: starttls does not apply to smtps:// (TLS from the start)")
        return TlsMode.IMPLICIT
    return TlsMode.STARTTLS if _flag(starttls, "starttls", default=True) else TlsMode.NONE


def _credentials(parts: SplitResult) -> tuple[str | None, str | None]:
    if parts.username is None and parts.password is None:
        return None, None
    username = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if not username or not password:
        raise ValueError("SMTP URL: give both a user name and a password (user:pass@host)")
    return username, password


def _timeout_s(value: str | None) -> float:
    if value is None:
        return DEFAULT_TIMEOUT_S
    try:
        timeout = float(value)
    except ValueError:
        timeout = math.nan
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError("SMTP URL: timeout must be a positive number of seconds")
    return timeout


def _envelope(message: EmailMessage) -> tuple[str, list[str]]:
    # The envelope comes from the parsed header objects the composer set, never from re-reading
    # header text, so a display name cannot smuggle in an extra RCPT.
    senders = _addresses(message, "From")
    recipients = _addresses(message, "To")
    if len(senders) != 1 or not recipients:
        raise MailError("the message needs exactly one From and at least one To", permanent=True)
    return senders[0], recipients


def _addresses(message: EmailMessage, name: str) -> list[str]:
    header = message.get(name)
    if not isinstance(header, AddressHeader):
        return []
    return [address.addr_spec for address in header.addresses]


def _mail_error(exc: Exception) -> MailError:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return _mail_error(exc.recipients[0])
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply_error(exc)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return MailError(f"SMTP server cannot take this message: {exc.message}", permanent=True)
    if isinstance(exc, TimeoutError):
        return MailError("the SMTP server did not answer in time", permanent=False)
    if isinstance(exc, aiosmtplib.SMTPConnectError):
        cause = exc.__cause__ or exc
        return MailError(
            f"could not connect to the SMTP server ({_describe(cause)})", permanent=False
        )
    # Before ValueError: ssl.SSLCertVerificationError is both, and a bad server certificate
    # is the server's (or our configuration's) problem, not this message's.
    if isinstance(exc, ValueError) and not isinstance(exc, OSError):
        return MailError(f"the message cannot be sent over SMTP: {exc}", permanent=True)
    return MailError(f"SMTP delivery failed ({_describe(exc)})", permanent=False)


def _reply_error(exc: aiosmtplib.SMTPResponseException) -> MailError:
    stage = next((name for kind, name in _STAGES if isinstance(exc, kind)), "command")
    permanent = 500 <= exc.code < 600 and not isinstance(exc, _SERVER_LEVEL_REPLIES)
    text = compose.clean_text(exc.message, max_chars=MAX_SERVER_TEXT_CHARS)
    return MailError(
        f"SMTP server rejected the {stage}: {exc.code} {text}",
        permanent=permanent,
        smtp_code=exc.code,
    )


def _describe(exc: BaseException) -> str:
    # Server replies and OS errors are untrusted text: cleaned and capped before anyone sees them.
    detail = compose.clean_text(str(exc), max_chars=MAX_SERVER_TEXT_CHARS)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def eml_name(message_id: str) -> str:
    """The ``.eml`` file name of the message with this Message-ID; raises ValueError."""
    message_id = message_id.strip().strip("<>")
    stem = _UNSAFE_FILENAME_CHARS.sub("_", message_id)[:MAX_EML_STEM_CHARS].lstrip(".")
    if not stem:
        raise ValueError("the message has no Message-ID to name its .eml file after")
    return f"{stem}.eml"
