"""Settings come from the environment, and every bad value is reported at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.config import ConfigError, Settings


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.port == 8080 and settings.database_url is None
    assert settings.max_bulk_entries == 10_000
    assert settings.base_url == "http://localhost:8080"


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {"PORT": "9000", "PUBLIC_BASE_URL": "https://vault.example.org/", "WORKERS": "0"}
    )
    assert settings.port == 9000 and settings.workers == 0
    assert settings.base_url == "https://vault.example.org"


def test_every_bad_variable_is_named_in_one_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(
            {
                "PORT": "eighty",
                "WORKERS": "-3",
                "DATABASE_URL": "mysql://x",
                "PUBLIC_BASE_URL": "ftp://x",
                "WEBHOOKS_ALLOW_HTTP": "maybe",
            }
        )
    message = str(caught.value)
    for name in ("PORT", "WORKERS", "DATABASE_URL", "PUBLIC_BASE_URL", "WEBHOOKS_ALLOW_HTTP"):
        assert name in message
    assert len(caught.value.problems) == 5


def test_inconsistent_values_are_refused() -> None:
    with pytest.raises(ConfigError, match="JOB_TIMEOUT_S"):
        Settings.from_env({"JOB_LEASE_S": "10", "JOB_TIMEOUT_S": "20"})


def test_secrets_are_not_in_repr() -> None:
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://u:hunter2@db/x", "SMTP_URL": "smtp://u:pw5@mail"}
    )
    assert "hunter2" not in repr(settings) and "pw5" not in repr(settings)


def test_command_line_reports_bad_settings_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        env={"PORT": "0", "DB_POOL_MIN": "x", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "PORT" in result.stderr and "DB_POOL_MIN" in result.stderr
    assert "Traceback" not in result.stderr
