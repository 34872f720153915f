"""Typed settings, read from the environment in this one place.

``Settings.from_env`` reads every variable, and reports every bad one in a single
``ConfigError`` so an operator fixes them all in one go.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MIB = 1024 * 1024


class ConfigError(Exception):
    """Bad or missing settings; the message names every bad variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be true or false")


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ValueError("must be an http(s) URL such as https://vault.example.org")
    return raw.rstrip("/")


def _postgres_url(raw: str) -> str:
    if urlsplit(raw).scheme not in {"postgres", "postgresql"}:
        raise ValueError("must be a postgresql:// URL")
    return raw


def _storage_url(raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme not in {"file", "s3"}:
        raise ValueError("must be file:///absolute/path or s3://bucket/prefix")
    return raw


def _smtp_url(raw: str) -> str:
    if urlsplit(raw).scheme not in {"smtp", "smtps"}:
        raise ValueError("must be smtp://host:port or smtps://host:port")
    return raw


def _seconds_list(raw: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise ValueError("must be whole seconds separated by commas, e.g. 10,60,600") from None
    if not 1 <= len(values) <= 50 or not all(1 <= value <= 7 * 86400 for value in values):
        raise ValueError("must list 1 to 50 delays, each between 1 and 604800 seconds")
    return values


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(raw: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in raw.split(","))
    except ValueError:
        raise ValueError(
            "must be addresses or networks separated by commas, e.g. 10.0.0.0/8"
        ) from None


def _log_format(raw: str) -> str:
    if raw not in {"json", "text"}:
        raise ValueError("must be json or text")
    return raw


def _log_level(raw: str) -> str:
    upper = raw.upper()
    if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return upper


def env(name: str, parse: Callable[[str], Any] = str, **kwargs: Any) -> Any:
    """A settings field read from environment variable ``name``."""
    return field(metadata={"env": name, "parse": parse}, **kwargs)


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Database: DATABASE_URL, or an embedded PostgreSQL kept under data_dir/pg.
    database_url: str | None = env("DATABASE_URL", _postgres_url, default=None, repr=False)
    data_dir: Path = env("VAULT_DATA_DIR", Path, default=Path(".data"))
    db_pool_min: int = env("DB_POOL_MIN", _int(1, 100), default=2)
    db_pool_max: int = env("DB_POOL_MAX", _int(2, 200), default=10)
    db_command_timeout_s: float = env("DB_COMMAND_TIMEOUT_S", _float(0.1, 600), default=30.0)
    migrate_on_start: bool = env("MIGRATE_ON_START", _bool, default=True)
    # HTTP
    host: str = env("HOST", default="0.0.0.0")
    port: int = env("PORT", _int(1, 65535), default=8080)
    public_base_url: str | None = env("PUBLIC_BASE_URL", _http_url, default=None)
    log_level: str = env("LOG_LEVEL", _log_level, default="INFO")
    log_format: str = env("LOG_FORMAT", _log_format, default="text")
    # Files and uploads
    storage_url: str | None = env("STORAGE_URL", _storage_url, default=None)
    s3_endpoint_url: str | None = env("S3_ENDPOINT_URL", _http_url, default=None)
    s3_region: str = env("S3_REGION", default="us-east-1")
    s3_access_key_id: str | None = env("S3_ACCESS_KEY_ID", default=None, repr=False)
    s3_secret_access_key: str | None = env("S3_SECRET_ACCESS_KEY", default=None, repr=False)
    max_upload_bytes: int = env("MAX_UPLOAD_BYTES", _int(1024, 1024 * MIB), default=20 * MIB)
    upload_ttl_s: int = env("UPLOAD_TTL_S", _int(60, 30 * 86400), default=86400)
    upload_quota_bytes: int = env("UPLOAD_QUOTA_BYTES", _int(MIB, 2**50), default=20 * 1024 * MIB)
    maintenance_interval_s: float = env("MAINTENANCE_INTERVAL_S", _float(1, 86400), default=60.0)
    max_bulk_entries: int = env("MAX_BULK_ENTRIES", _int(1, 100_000), default=10_000)
    # 10,000 bulk entries with every field at its longest are 18.3 MiB of ASCII JSON
    max_json_body_bytes: int = env("MAX_JSON_BODY_BYTES", _int(MIB, 1024 * MIB), default=32 * MIB)
    search_window: int = env("SEARCH_WINDOW", _int(100, 1_000_000), default=1_000)
    # Workers and the job engine
    workers: int = env("WORKERS", _int(0, 256), default=32)
    cpu_processes: int = env("CPU_PROCESSES", _int(0, 64), default=0)
    io_threads: int = env("IO_THREADS", _int(1, 512), default=32)
    certificates_per_job: int = env("CERTIFICATES_PER_JOB", _int(1, 100), default=16)
    job_lease_s: float = env("JOB_LEASE_S", _float(2, 3600), default=60.0)
    job_timeout_s: float = env("JOB_TIMEOUT_S", _float(1, 3600), default=45.0)
    job_max_attempts: int = env("JOB_MAX_ATTEMPTS", _int(1, 100), default=5)
    poll_interval_s: float = env("POLL_INTERVAL_S", _float(0.05, 60), default=1.0)
    drain_timeout_s: float = env("DRAIN_TIMEOUT_S", _float(0, 600), default=20.0)
    # a worker holding other jobs leaves emails waiting up to this long (0: no waiting)
    background_defer_s: float = env("BACKGROUND_DEFER_S", _float(0, 3600), default=60.0)
    # Email
    smtp_url: str | None = env("SMTP_URL", _smtp_url, default=None, repr=False)
    mail_from: str = env("MAIL_FROM", default="Certificate Vault <no-reply@vault.localhost>")
    # Webhooks
    webhooks_allow_http: bool = env("WEBHOOKS_ALLOW_HTTP", _bool, default=False)
    webhooks_allow_private: bool = env("WEBHOOKS_ALLOW_PRIVATE", _bool, default=False)
    webhook_timeout_s: float = env("WEBHOOK_TIMEOUT_S", _float(0.1, 60), default=10.0)
    # delays between attempts; None: the built-in schedule (11 attempts over about 28 hours)
    webhook_retry_schedule_s: tuple[int, ...] | None = env(
        "WEBHOOK_RETRY_SCHEDULE_S", _seconds_list, default=None
    )
    # an endpoint whose attempts all fail for this long is disabled
    webhook_disable_after_s: float = env(
        "WEBHOOK_DISABLE_AFTER_S", _float(60, 90 * 86400), default=86400.0
    )
    # finished deliveries (and their attempts) older than this are purged by housekeeping
    webhook_retention_s: float = env(
        "WEBHOOK_RETENTION_S", _float(3600, 3650 * 86400), default=30 * 86400.0
    )
    # Rate limits (requests per minute)
    rate_limit_per_token: int = env("RATE_LIMIT_PER_TOKEN", _int(0, 10**7), default=1200)
    rate_limit_public_per_ip: int = env("RATE_LIMIT_PUBLIC_PER_IP", _int(0, 10**7), default=60)
    # load balancers whose X-Forwarded-For names the client (per-address limits count it)
    trusted_proxies: tuple[Network, ...] = env("TRUSTED_PROXIES", _networks, default=())
    rate_limit_auth_failures_per_ip: int = env(
        "RATE_LIMIT_AUTH_FAILURES_PER_IP", _int(0, 10**7), default=30
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for spec in dataclasses.fields(cls):
            name = spec.metadata["env"]
            raw = source.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as exc:
                problems.append(f"{name}={raw!r}: {exc}")
        if problems:
            raise ConfigError(problems)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        problems = []
        if self.db_pool_min > self.db_pool_max:
            problems.append("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if self.job_timeout_s >= self.job_lease_s:
            problems.append("JOB_TIMEOUT_S must be shorter than JOB_LEASE_S")
        if self.storage_url and self.storage_url.startswith("s3://") and not self.s3_region:
            problems.append("S3_REGION is required with an s3:// STORAGE_URL")
        if problems:
            raise ConfigError(problems)

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def base_url(self) -> str:
        return self.public_base_url or f"http://localhost:{self.port}"

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.data_dir.resolve() / "files").as_uri()

    @property
    def outbox_dir(self) -> Path:
        return self.data_dir / "outbox"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"
