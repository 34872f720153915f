"""The verification page's HTML and stylesheet: ``string.Template``, every value escaped."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from string import Template

from service.verification import PublicCertificate, Verdict

TEMPLATES = Path(__file__).resolve().parent / "templates"
PAGE = Template((TEMPLATES / "verify.html").read_text(encoding="utf-8"))
STYLESHEET = (TEMPLATES / "verify.css").read_bytes()
# The stylesheet's URL carries its hash, so it can be cached for good and still change on deploy.
STYLESHEET_VERSION = hashlib.sha256(STYLESHEET).hexdigest()[:16]
MAX_SHOWN_REFERENCE = 40
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

_ICON = (
    '<svg viewBox="0 0 24 24" aria-hidden="true" fill="none" stroke="currentColor"'
    ' stroke-width="2.25" stroke-linecap="round" stroke-linejoin="round">'
    '<circle cx="12" cy="12" r="9.5"/>{}</svg>'
)
ICONS = {
    "valid": _ICON.format('<path d="m7.5 12.5 3 3 6-6.5"/>'),
    "revoked": _ICON.format('<path d="m9 9 6 6M15 9l-6 6"/>'),
    "unknown": _ICON.format(
        '<path d="M9.6 9.3a2.5 2.5 0 0 1 4.8.9c0 1.7-2.4 2.2-2.4 3.6"/><path d="M12 17.2h.01"/>'
    ),
}


ABOUT_VAULT = (
    "Institutions register the certificates they issue in the Certificate Vault. Each one gets a"
    " unique reference ID and a QR code, printed on the document, that lead to this page."
)
EXPLAIN_VALID = (
    "This page shows the record as the institution registered it, straight from the vault."
    " Compare the name, title, institution and date with the document in front of you: if any"
    " of them differ, the document may have been altered."
)
EXPLAIN_REVOKED = (
    "A revoked certificate was issued and later withdrawn by its institution, for example"
    " because it was issued in error. For details, contact the institution directly."
)
EXPLAIN_UNKNOWN = (
    "No record in the vault matches this reference ID. It may have been mistyped, or the"
    " certificate is not (yet) available here. If in doubt, contact the institution named on"
    " the document."
)


@dataclass(frozen=True, slots=True)
class Wording:
    page_title: str
    badge: str
    headline: str
    lede: str
    explanation: str


def human_date(value: date) -> str:
    """``1 June 2025``: unambiguous wherever the reader lives, and independent of the locale."""
    return f"{value.day} {MONTHS[value.month - 1]} {value.year}"


def human_timestamp(value: datetime) -> str:
    moment = value.astimezone(UTC)
    return f"{human_date(moment.date())}, {moment:%H:%M} UTC"


def shown_reference(reference_id: str) -> str:
    """A requested id as shown back: anything can be in a URL, so it is cut short."""
    if len(reference_id) <= MAX_SHOWN_REFERENCE:
        return reference_id
    return reference_id[:MAX_SHOWN_REFERENCE] + "…"


def wording(certificate: PublicCertificate | None) -> Wording:
    if certificate is None:
        return Wording(
            page_title="Certificate not found",
            badge="Not found",
            headline="No certificate found",
            lede="There is no valid certificate with this reference ID in the vault. Check"
            " that it was scanned or typed correctly; if it was, the document may not be"
            " genuine.",
            explanation=EXPLAIN_UNKNOWN,
        )
    if certificate.verdict is Verdict.REVOKED:
        return Wording(
            page_title=f"Revoked: {certificate.certificate_title}",
            badge="Revoked",
            headline="This certificate has been revoked",
            lede="The issuing institution has withdrawn this certificate. It should no longer"
            " be relied on.",
            explanation=EXPLAIN_REVOKED,
        )
    return Wording(
        page_title=f"Verified: {certificate.certificate_title}",
        badge="Verified",
        headline="This certificate is authentic",
        lede="It was issued by the institution below and registered in the vault, and it has"
        " not been revoked.",
        explanation=EXPLAIN_VALID,
    )


def _row(label: str, value_html: str, css: str = "row") -> str:
    return f'      <div class="{css}"><dt>{escape(label)}</dt><dd>{value_html}</dd></div>'


def _reference_html(reference_id: str) -> str:
    return f'<code class="ref">{escape(shown_reference(reference_id))}</code>'


def detail_rows(certificate: PublicCertificate) -> list[str]:
    rows = [
        _row("Recipient", f'<span class="primary">{escape(certificate.full_name)}</span>'),
        _row("Certificate", escape(certificate.certificate_title)),
        _row("Issued by", escape(certificate.institution_name)),
    ]
    if certificate.issue_date is not None:
        rows.append(_row("Issue date", escape(human_date(certificate.issue_date))))
    rows.append(_row("Reference ID", _reference_html(certificate.reference_id)))
    if certificate.revoked_at is not None:
        rows.append(
            _row("Revoked on", escape(human_date(certificate.revoked_at.date())), "row alert")
        )
    if certificate.revocation_reason:
        rows.append(_row("Reason", escape(certificate.revocation_reason), "row alert"))
    return rows


def qr_figure(certificate: PublicCertificate | None, qr_url: str | None) -> str:
    if certificate is None or certificate.verdict is not Verdict.VALID or qr_url is None:
        return ""
    return (
        '    <figure class="qr">'
        f'<img src="{escape(qr_url)}" alt="QR code of this certificate" width="96" height="96">'
        "<figcaption>The QR code printed on this certificate. Scanning it opens this"
        " page.</figcaption></figure>"
    )


def render(
    *,
    reference_id: str,
    certificate: PublicCertificate | None,
    checked_at: datetime,
    stylesheet_url: str,
    qr_url: str | None = None,
) -> str:
    """The whole page; ``certificate`` None means unknown. Every inserted value is escaped."""
    words = wording(certificate)
    state = certificate.verdict.value if certificate else "unknown"
    if certificate is None:
        rows = [_row("Reference ID", _reference_html(reference_id))]
    else:
        rows = detail_rows(certificate)
    return PAGE.substitute(
        page_title=escape(words.page_title),
        stylesheet=escape(stylesheet_url),
        state=state,
        icon=ICONS[state],
        badge=escape(words.badge),
        headline=escape(words.headline),
        lede=escape(words.lede),
        details="\n".join(rows),
        qr=qr_figure(certificate, qr_url),
        checked_iso=escape(checked_at.astimezone(UTC).isoformat(timespec="seconds")),
        checked_label=escape(human_timestamp(checked_at)),
        explanation="\n".join(
            f"    <p>{escape(text)}</p>" for text in (ABOUT_VAULT, words.explanation)
        ),
    )
