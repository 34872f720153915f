"""Cases found by reviews: file-opening actions, deep action chains, odd public hosts."""

from __future__ import annotations

import io

import pikepdf
import pytest

from service.artifacts import ArtifactError, render_artifacts
from service.pipeline import mail_domain
from tests import samples

URL = "https://vault.example.test/verify/VEC-IC-2025ABCDEF0123456"


def render(original: bytes) -> bytes:
    return render_artifacts(
        original,
        "application/pdf",
        reference_id="VEC-IC-2025ABCDEF0123456",
        verify_url=URL,
        institution_name="Example Institute",
    ).verified_pdf


def with_open_action(action: pikepdf.Dictionary) -> bytes:
    with pikepdf.open(io.BytesIO(samples.make_pdf())) as pdf:
        pdf.Root.OpenAction = action
        buffer = io.BytesIO()
        pdf.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["GoToR", "Thread", "Sound", "Movie"])
def test_actions_that_open_other_files_are_removed(kind: str) -> None:
    smb = pikepdf.String("\\\\attacker\\share\\x.pdf")
    stamped = render(with_open_action(pikepdf.Dictionary(S=pikepdf.Name("/" + kind), F=smb)))
    assert f"/{kind}".encode() not in stamped and b"attacker" not in stamped


def test_an_action_chain_too_deep_to_check_is_refused() -> None:
    action = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=pikepdf.String("app.alert(1)"))
    for _ in range(40):  # /Next chains of direct dictionaries, as a viewer follows them
        action = pikepdf.Dictionary(S=pikepdf.Name.URI, URI="https://x.test", Next=action)
    with pytest.raises(ArtifactError, match="too deeply"):
        render(with_open_action(action))


@pytest.mark.parametrize(
    ("base_url", "domain"),
    [
        ("https://vault.example.org", "vault.example.org"),
        ("https://bücher.example", "xn--bcher-kva.example"),
        ("http://vault_app:8000", "vault.localhost"),  # a container name: no DNS name
        ("http://[::1]:8000", "vault.localhost"),
        ("http://10.0.0.5:8080", "vault.localhost"),
    ],
)
def test_message_ids_get_a_domain_whatever_the_public_host(base_url: str, domain: str) -> None:
    assert mail_domain(base_url) == domain
