"""``vault-service``: serve, migrate, and the operator commands (institutions, tokens)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from aiohttp import web

from service import auth, db, logs
from service.app import create_app
from service.config import ConfigError, Settings
from service.data import Connection
from service.data import certificates as certificate_data
from service.data import institutions as institution_data
from service.data import recipients as recipient_data
from service.stopping import stop_gracefully_then_at_once
from service.webhooks import events

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


@asynccontextmanager
async def connect(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    async with db.database_url(settings.database_url, settings.data_dir) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await db.init_connection(conn)
            await db.migrate(conn)
            yield conn
        finally:
            await conn.close()


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async with db.database_url(settings.database_url, settings.data_dir) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            applied = await db.migrate(conn)
        finally:
            await conn.close()
    print(f"applied migrations: {applied}" if applied else "database is up to date")
    return 0


async def cmd_institutions_create(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as conn:
        row = await institution_data.create_institution(
            conn,
            name=args.name,
            email=args.email,
            phone_number=args.phone,
            address=args.address,
            contact_person=args.contact_person,
            website=args.website,
        )
    print(f"created institution {row['id']} {row['uuid']} {row['name']}")
    return 0


async def cmd_institutions_list(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as conn:
        rows = await institution_data.list_institutions(conn)
    for row in rows:
        print(f"{row['id']}\t{row['uuid']}\t{row['name']}\t{row['email']}")
    return 0


async def issue_token(
    conn: Connection, *, institution_id: int, name: str, permissions: Sequence[str]
) -> str:
    token = auth.new_token()
    await institution_data.create_token(
        conn,
        institution_id=institution_id,
        name=name,
        token_hash=auth.hash_token(token),
        token_prefix=token[: auth.DISPLAY_PREFIX_LENGTH],
        permissions=sorted(set(permissions)),
    )
    return token


def expand_permissions(given: Sequence[str]) -> list[str]:
    if "all" in given:
        return list(auth.PERMISSIONS)
    unknown = sorted(set(given) - set(auth.PERMISSIONS))
    if unknown:
        known = ", ".join(("all", *auth.PERMISSIONS))
        raise SystemExit(f"unknown permission(s): {', '.join(unknown)}; known: {known}")
    return list(given)


async def cmd_tokens_create(args: argparse.Namespace, settings: Settings) -> int:
    permissions = expand_permissions(args.permission)
    async with connect(settings) as conn:
        institution = await institution_data.find_institution(conn, key=args.institution)
        if institution is None:
            print(f"no institution {args.institution!r}", file=sys.stderr)
            return 1
        token = await issue_token(
            conn, institution_id=institution["id"], name=args.name, permissions=permissions
        )
    print("token (shown once, store it now):")
    print(token)
    return 0


async def cmd_tokens_list(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as conn:
        institution_id = None
        if args.institution:
            institution = await institution_data.find_institution(conn, key=args.institution)
            if institution is None:
                print(f"no institution {args.institution!r}", file=sys.stderr)
                return 1
            institution_id = institution["id"]
        rows = await institution_data.list_tokens(conn, institution_id=institution_id)
    for row in rows:
        state = "revoked" if row["revoked_at"] else "active"
        print(
            f"{row['uuid']}\t{row['token_prefix']}...\t{row['name']}\t{row['institution_name']}"
            f"\t{state}\tlast used {row['last_used_at'] or 'never'}\t{','.join(row['permissions'])}"
        )
    return 0


async def cmd_tokens_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as conn:
        row = await institution_data.revoke_token(conn, key=args.token)
    if row is None:
        print(f"no token {args.token!r}", file=sys.stderr)
        return 1
    print(f"revoked {row['uuid']} {row['token_prefix']}... ({row['name']})")
    return 0


async def cmd_recipients_add(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as conn:
        row = await recipient_data.add_recipient(conn, email=args.email, name=args.name)
    if row is None:
        print(f"a recipient with email {args.email} already exists", file=sys.stderr)
        return 1
    print(f"added recipient {row['uuid']} {row['email']}")
    return 0


async def cmd_recipients_list(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as conn:
        rows = await recipient_data.list_recipients(conn)
    for row in rows:
        print(f"{row['uuid']}\t{row['email']}\t{row['name']}")
    return 0


async def cmd_certificates_revoke(args: argparse.Namespace, settings: Settings) -> int:
    async with connect(settings) as conn, conn.transaction():
        row = await certificate_data.revoke(conn, key=args.certificate, reason=args.reason)
        if row is not None:
            await events.emit_certificate(
                conn, certificate_id=row["id"], event=events.REVOKED, base_url=settings.base_url
            )
    if row is None:
        print(f"no generated certificate {args.certificate!r}", file=sys.stderr)
        return 1
    print(f"revoked {row['reference_id']} ({row['uuid']})")
    return 0


async def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from service import workers

    if args.workers is not None:
        settings = settings.with_overrides(workers=args.workers)
    await workers.run_standalone(settings)
    return 0


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    from service import demo

    if args.no_migrate:
        settings = settings.with_overrides(migrate_on_start=False)
    if args.workers is not None:
        settings = settings.with_overrides(workers=args.workers)
    app = create_app(settings, extra_contexts=[demo.demo_ctx] if args.demo else [])
    app.on_shutdown.append(stop_gracefully_then_at_once)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        access_log=None,
        shutdown_timeout=settings.drain_timeout_s + 5,
        print=lambda _: None,
    )
    return 0


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_process_commands(sub: Subparsers) -> None:
    serve = sub.add_parser("serve", help="run the HTTP API (and workers)")
    serve.add_argument(
        "--workers", type=int, default=None, help="job workers in this process (0: API only)"
    )
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations on start")
    serve.add_argument(
        "--demo", action="store_true", help="create a demo institution and token once"
    )
    serve.set_defaults(func=None)
    worker = sub.add_parser("worker", help="run only job workers (no HTTP)")
    worker.add_argument("--workers", type=int, default=None, help="jobs in flight at once")
    worker.set_defaults(func=cmd_worker)
    migrate = sub.add_parser("migrate", help="apply pending database migrations")
    migrate.set_defaults(func=cmd_migrate)


def add_institution_commands(sub: Subparsers) -> None:
    institutions = sub.add_parser("institutions").add_subparsers(dest="action", required=True)
    create = institutions.add_parser("create", help="register an institution")
    create.add_argument("--name", required=True)
    create.add_argument("--email", required=True)
    for option in ("--phone", "--address", "--contact-person", "--website"):
        create.add_argument(option)
    create.set_defaults(func=cmd_institutions_create)
    institutions.add_parser("list").set_defaults(func=cmd_institutions_list)


def add_token_commands(sub: Subparsers) -> None:
    tokens = sub.add_parser("tokens").add_subparsers(dest="action", required=True)
    create = tokens.add_parser("create", help="issue an API token (printed once)")
    create.add_argument("--institution", required=True, help="id, uuid or name")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--permission", action="append", required=True, help="repeatable; 'all' for every one"
    )
    create.set_defaults(func=cmd_tokens_create)
    listing = tokens.add_parser("list", help="list tokens (never shows secrets)")
    listing.add_argument("--institution")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = tokens.add_parser("revoke", help="revoke a token by uuid or prefix")
    revoke.add_argument("token")
    revoke.set_defaults(func=cmd_tokens_revoke)


def add_vault_commands(sub: Subparsers) -> None:
    recipients = sub.add_parser("recipients").add_subparsers(dest="action", required=True)
    add = recipients.add_parser("add", help="register a known recipient account")
    add.add_argument("--email", required=True)
    add.add_argument("--name", required=True)
    add.set_defaults(func=cmd_recipients_add)
    recipients.add_parser("list").set_defaults(func=cmd_recipients_list)
    certificates = sub.add_parser("certificates").add_subparsers(dest="action", required=True)
    revoke = certificates.add_parser("revoke", help="revoke a generated certificate")
    revoke.add_argument("certificate", help="uuid or reference id")
    revoke.add_argument("--reason", default=None)
    revoke.set_defaults(func=cmd_certificates_revoke)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vault-service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add_commands in (
        add_process_commands,
        add_institution_commands,
        add_token_commands,
        add_vault_commands,
    ):
        add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"vault-service: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    if args.command == "serve":
        return run_serve(args, settings)
    command: Command = args.func
    try:
        return asyncio.run(command(args, settings))
    except KeyboardInterrupt:
        return 130
