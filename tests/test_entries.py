"""The bulk fast path agrees with the marshmallow schema on valid and invalid entries."""

from __future__ import annotations

import random
import uuid
from typing import Any

from service.entries import ENTRY_SCHEMA, check_entries, entry_problems, fast_entry

VALUES: dict[str, list[Any]] = {
    "certificate_title": [
        "Certificate of Achievement",
        "  padded title  ",
        "",
        "   ",
        None,
        42,
        ["x"],
        "t" * 255,
        "t" * 256,
        " " + "t" * 255,
        "Zertifikat für Ümläute",
        "\t\n",
        "a\u0301",
    ],
    "full_name": ["John Smith", "", None, 3.5, "n" * 255, "n" * 256, "  J  ", "李小龍", True],
    "applicant_email": [
        "john@example.com",
        "JOHN@EXAMPLE.COM",
        " john@example.com ",
        "not-an-email",
        "a@b",
        "a@b.c",
        "",
        None,
        7,
        "x" * 250 + "@e.com",
        "john@exa mple.com",
        "jöhn@example.com",
        "john@localhost",
        "a" * 64 + "@example.com",
        "a" * 65 + "@example.com",
        "john@[127.0.0.1]",
    ],
    "file_id": [
        str(uuid.UUID(int=1)),
        str(uuid.uuid4()).upper(),
        "123",
        "",
        None,
        5,
        uuid.uuid4().hex,
        "{" + str(uuid.uuid4()) + "}",
        "urn:uuid:" + str(uuid.uuid4()),
        " " + str(uuid.uuid4()),
        str(uuid.uuid4()) + "\n",
    ],
    "issue_date": [
        "2025-06-01",
        "2025-6-1",
        "01-06-2025",
        "2025-02-30",
        "2024-02-29",
        "",
        None,
        20250601,
        "2025-06-01T00:00:00",
        " 2025-06-01",
        "0000-01-01",
        "9999-12-31",
    ],
    "details": ["Awarded", "", "  ", None, "d" * 1000, "d" * 1001, 12, {"a": 1}],
}
MISSING = object()


def random_entry(rng: random.Random) -> Any:
    if rng.random() < 0.03:
        return rng.choice(["text", 1, None, [1]])
    entry: dict[str, Any] = {}
    for field, choices in VALUES.items():
        value = choices[0] if rng.random() < 0.6 else rng.choice([*choices, MISSING])
        if value is not MISSING:
            entry[field] = value
    if rng.random() < 0.1:
        entry["status"] = "generated"
    return entry


def reference(entries: list[Any]) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    """The schema alone: every valid entry loaded (with its index), every other one's problems."""
    problems = [line for i, e in enumerate(entries) for line in entry_problems(i, e)]
    valid = [(i, ENTRY_SCHEMA.load(e)) for i, e in enumerate(entries) if not entry_problems(i, e)]
    return valid, problems


def test_fast_path_equals_the_schema_entry_by_entry() -> None:
    rng = random.Random(20261130)
    for _ in range(5000):
        entries = [random_entry(rng)]
        assert check_entries(entries) == reference(entries), entries


def test_fast_path_equals_the_schema_for_whole_bodies() -> None:
    rng = random.Random(7)
    for _ in range(300):
        entries = [random_entry(rng) for _ in range(rng.randint(1, 12))]
        assert check_entries(entries) == reference(entries)


def fast_load(entries: list[Any]) -> list[dict[str, Any]] | None:
    """All entries through the fast path, or None if one needs the schema."""
    try:
        return [fast_entry(entry) for entry in entries]
    except LookupError:
        return None


def test_whatever_the_fast_path_accepts_the_schema_accepts_identically() -> None:
    rng = random.Random(11)
    accepted = 0
    for _ in range(5000):
        entry = random_entry(rng)
        loaded = fast_load([entry])
        if loaded is not None:
            accepted += 1
            assert loaded == [ENTRY_SCHEMA.load(entry)]
    assert accepted > 500


def test_ordinary_valid_entries_take_the_fast_path() -> None:
    entries = [
        {
            "certificate_title": f"Certificate {n}",
            "full_name": f"Student {n}",
            "applicant_email": f"s{n}@example.com",
            "file_id": str(uuid.uuid4()),
            **({"issue_date": "2025-06-01"} if n % 2 else {}),
            **({"details": "x"} if n % 3 else {}),
        }
        for n in range(1000)
    ]
    assert fast_load(entries) is not None
