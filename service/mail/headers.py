"""Header fields encoded and folded here (RFC 5322, RFC 2047), which the stdlib emits verbatim.

Python's header registry is slow and its folder has had header-injection bugs
(python/cpython#121650), so it never touches these fields; the exact block that will be sent is
checked instead. Values must already be cleaned (see ``compose.clean_text``).
"""

from __future__ import annotations

import re
import string
from datetime import UTC, datetime
from email.headerregistry import Address, AddressHeader, Group
from email.policy import Policy
from email.utils import format_datetime
from typing import Self

ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
MAX_LINE_CHARS = 998

# RFC 2047 caps a line holding an encoded word at 76 characters (RFC 5322 asks for 78).
_FOLD_AT = 76
# "=?utf-8?q?" + 54 + "?=" is 66 characters: an encoded word fits after "Subject: ".
_MAX_Q_CHARS = 54
_Q_SAFE = frozenset(string.ascii_letters + string.digits + "!*+-/")
_ATOM = re.compile(ATEXT)
_WORD = rf'(?:{ATEXT}|"(?:[^"\\]|\\.)*")'
_ADDR_SPEC = rf"{ATEXT}(?:\.{ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_ONE_MAILBOX = re.compile(rf"(?:{_WORD} )+<(?P<angle>{_ADDR_SPEC})>|(?P<bare>{_ADDR_SPEC})")
_HEADER_LINE = re.compile(r"(?P<name>[A-Za-z-]+):(?: [ -~]*)?| [!-~][ -~]*")
_CERTIFICATE_FIELDS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
)


class Field(str):
    """A header field with its folded text; its value as a string is the unfolded, decoded text.

    Email policies hand back a value that has a ``name`` as it is and serialise it with its
    ``fold`` (both documented in ``email.policy``), so the stdlib never re-folds or re-parses it.
    """

    name: str
    folded: str  # "Name: value", CRLF-folded, without the final line break

    def __new__(cls, name: str, value: str, folded: str) -> Self:
        field = super().__new__(cls, value)
        field.name, field.folded = name, folded
        return field

    def fold(self, *, policy: Policy) -> str:
        return self.folded.replace("\r\n", policy.linesep) + policy.linesep

    def __reduce__(self) -> tuple[type[Field], tuple[object, ...]]:
        return type(self), (self.name, str(self), self.folded)


class MailboxField(Field, AddressHeader):
    """A From or To field of one mailbox that answers ``addresses`` like the stdlib's own."""

    mailbox: Address

    def __new__(cls, name: str, value: str, folded: str, mailbox: Address) -> Self:
        field = super().__new__(cls, name, value, folded)
        field.mailbox = mailbox
        return field

    @property
    def groups(self) -> tuple[Group, ...]:
        return (Group(None, [self.mailbox]),)

    @property
    def addresses(self) -> tuple[Address, ...]:
        return (self.mailbox,)

    def __reduce__(self) -> tuple[type[Field], tuple[object, ...]]:
        return type(self), (self.name, str(self), self.folded, self.mailbox)


def certificate_fields(
    *, sender: Address, recipient: Address, subject: str, message_id: str, boundary: str
) -> list[Field]:
    """The top-level fields of a certificate email, checked; raises ValueError."""
    fields = [
        mailbox_field("From", sender),
        mailbox_field("To", recipient),
        Field("Subject", subject, _fold("Subject", _unstructured(subject))),
        simple_field("Date", format_datetime(datetime.now(UTC))),
        simple_field("Message-ID", message_id),
        simple_field("Auto-Submitted", "auto-generated"),
        simple_field("MIME-Version", "1.0"),
        simple_field("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    check_fields(fields, sender, recipient)
    return fields


def check_fields(fields: list[Field], sender: Address, recipient: Address) -> None:
    """Prove that the lines to be sent carry no added header or recipient: printable ASCII, each
    line a continuation or one intended field (once, in order), and From and To each exactly the
    one intended mailbox. Raises ValueError. Defence in depth: the encoders above should ensure it.
    """
    names = []
    for line in "\r\n".join(field.folded for field in fields).split("\r\n"):
        match = _HEADER_LINE.fullmatch(line)
        if match is None or len(line) > MAX_LINE_CHARS:
            raise ValueError("the composed headers are not well-formed")
        if match["name"]:
            names.append(match["name"])
    if tuple(names) != _CERTIFICATE_FIELDS:
        raise ValueError("the composed headers are not the intended ones")
    for field, address in zip(fields[:2], (sender, recipient), strict=True):
        value = field.folded.replace("\r\n", "").partition(":")[2].removeprefix(" ")
        match = _ONE_MAILBOX.fullmatch(value)
        if match is None or (match["angle"] or match["bare"]) != address.addr_spec:
            raise ValueError(f"the composed {field.name} header is not the intended mailbox")


def simple_field(name: str, value: str) -> Field:
    """A field of our own printable ASCII words, folded at their spaces."""
    return Field(name, value, _fold(name, value.split(" ")))


def mailbox_field(name: str, address: Address) -> MailboxField:
    spec = address.addr_spec
    tokens = [*_phrase(address.display_name), f"<{spec}>"] if address.display_name else [spec]
    return MailboxField(name, str(address), _fold(name, tokens), address)


def _fold(name: str, tokens: list[str]) -> str:
    """``Name: token token``, with a line break before a token that would pass 76 characters."""
    line = f"{name}: {' '.join(tokens)}"
    if len(line) <= _FOLD_AT:
        return line
    lines = [f"{name}:"]
    for token in tokens:
        if len(lines[-1]) + 1 + len(token) > _FOLD_AT:
            lines.append("")
        lines[-1] += f" {token}"
    return "\r\n".join(lines)


def _phrase(name: str) -> list[str]:
    """A display name as words: atoms as they are, else one quoted string, else encoded words."""
    if _is_plain(name):
        words = name.split(" ")
        if not all(_ATOM.fullmatch(word) for word in words):
            escaped = name.replace("\\", "\\\\").replace('"', '\\"')
            words = f'"{escaped}"'.split(" ")
        if _fits(words):
            return words
    return _encoded_words(name)


def _unstructured(text: str) -> list[str]:
    words = text.split(" ")
    return words if _is_plain(text) and _fits(words) else _encoded_words(text)


def _is_plain(text: str) -> bool:
    # A decoder would act on an "=?" in plain text, so such text is always encoded.
    return text.isascii() and text.isprintable() and "=?" not in text


def _fits(words: list[str]) -> bool:
    return all(len(word) < _FOLD_AT for word in words)


def _encoded_words(text: str) -> list[str]:
    """RFC 2047 "Q" encoded words of whole characters, each at most 66 characters long."""
    words: list[str] = []
    chunk = ""
    for char in text:
        if char in _Q_SAFE:
            piece = char
        else:
            piece = "_" if char == " " else "=" + char.encode().hex("=").upper()
        if len(chunk) + len(piece) > _MAX_Q_CHARS:
            words.append(f"=?utf-8?q?{chunk}?=")
            chunk = ""
        chunk += piece
    return [*words, f"=?utf-8?q?{chunk}?="]
