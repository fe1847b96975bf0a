"""`hub keys ...` and `hub customers ...`: API keys, bulk import and export of customers.

- ``hub keys create --source NAME [--scope events --scope read ...]``: prints the new key once.
- ``hub keys list``: id, source, scopes, created, revoked (never a key).
- ``hub keys revoke ID``: the key stops working at once.
- ``hub customers import FILE [--rejects PATH] [--format csv|jsonl]``: validate and upsert;
  exit code 1 when some rows were rejected.
- ``hub customers export ID [--output PATH]``: all the hub holds about a customer, as JSON.

All of them talk to the Redis at ``redis_url`` (``HUB_REDIS_URL``) or behind ``redis_sentinel``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from .apikeys import SCOPES, KeyRing, UnknownKeyId
from .config import Settings
from .redis_conn import connect, redis_configured

__all__ = ["add_data_commands", "run_data_command"]

Command = Callable[[Redis, Settings, argparse.Namespace], Awaitable[int]]


def add_data_commands(sub: Any) -> None:
    """Add the ``keys`` and ``customers`` subcommands to ``hub``'s subparsers."""
    keys_cmd = sub.add_parser("keys", help="API keys for upstream systems (stored hashed in Redis)")
    keys_sub = keys_cmd.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key and print it (once; only its hash is kept)")
    create.add_argument("--source", required=True, help="the upstream system's name (events are idempotent per source)")
    create.add_argument(
        "--scope",
        action="append",
        default=[],
        help=f"one of {', '.join(SCOPES)} (repeatable; default: events and read)",
    )
    listing = keys_sub.add_parser("list", help="every stored key: id, source, scopes, created, revoked")
    listing.add_argument("--json", action="store_true", help="one JSON object per key")
    revoke = keys_sub.add_parser("revoke", help="stop a key working, at once")
    revoke.add_argument("id", help="the key's id (see `hub keys list`)")

    customers = sub.add_parser("customers", help="bulk import of customers; export of one (access requests)")
    customers_sub = customers.add_subparsers(dest="customers_command", required=True)
    imp = customers_sub.add_parser("import", help="validate and upsert customers from CSV or JSON lines")
    imp.add_argument("file", type=Path, help="a .csv file, or .jsonl/.ndjson with one customer per line")
    imp.add_argument("--rejects", type=Path, help="where rejected rows go (default: FILE.rejected.csv)")
    imp.add_argument("--format", choices=["csv", "jsonl"], help="the file's format (default: from its name)")
    imp.add_argument("--batch-size", type=int, default=500, help="rows per Redis round trip (default 500)")
    imp.add_argument("--region", help="region for national phone numbers (default: default_region)")
    imp.add_argument("--no-progress", action="store_true", help="no progress bar")
    exp = customers_sub.add_parser("export", help="print all the hub holds about one customer, as JSON")
    exp.add_argument("id", help="the customer's id")
    exp.add_argument("--output", type=Path, help="write the JSON here instead of to stdout")


def run_data_command(settings: Settings, args: argparse.Namespace) -> int | None:
    """Run ``args`` if it is one of these commands (its exit code), else None."""
    commands: dict[str, Command] = {
        "keys": _keys,
        "customers": _customers,
    }
    command = commands.get(args.command)
    if command is None:
        return None
    if not redis_configured(settings):
        print("set HUB_REDIS_URL (or HUB_REDIS_SENTINEL__SENTINELS)", file=sys.stderr)
        return 2
    return asyncio.run(_with_redis(settings, args, command))


async def _with_redis(settings: Settings, args: argparse.Namespace, command: Command) -> int:
    redis = connect(settings)
    try:
        return await command(redis, settings, args)
    finally:
        await redis.aclose()


async def _keys(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    ring = KeyRing(redis)
    if args.keys_command == "create":
        created = await ring.create(args.source, args.scope or ("events", "read"))
        key = created.key
        print(created.secret)
        print(
            f"id {key.id}, source {key.source}, scopes {','.join(key.scopes)}. "
            "This is the only time the key is shown; the hub keeps only its SHA-256.",
            file=sys.stderr,
        )
        return 0
    if args.keys_command == "list":
        stored = await ring.list_keys()
        if args.json:
            for k in stored:
                print(
                    json.dumps(
                        {
                            "id": k.id,
                            "source": k.source,
                            "scopes": list(k.scopes),
                            "prefix": k.prefix,
                            "created_at": k.created_at,
                            "revoked_at": k.revoked_at,
                        }
                    )
                )
            return 0
        print(f"{'ID':<17} {'PREFIX':<9} {'SOURCE':<20} {'SCOPES':<18} {'CREATED':<26} REVOKED")
        for k in stored:
            print(
                f"{k.id:<17} {k.prefix + '…':<9} {k.source:<20} {','.join(k.scopes):<18} {k.created_at:<26} "
                f"{k.revoked_at or '-'}"
            )
        return 0
    try:
        revoked = await ring.revoke(args.id)
    except UnknownKeyId as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"revoked {args.id}" if revoked else f"{args.id} was revoked already")
    return 0


async def _customers(redis: Redis, settings: Settings, args: argparse.Namespace) -> int:
    # Imported here: the models and tqdm are not needed by the hub's other commands.
    from .export import UnknownCustomer, export_customer
    from .importer import ImportFileError, import_customers, summary_lines

    if args.customers_command == "import":
        try:
            summary = await import_customers(
                redis,
                args.file,
                region=args.region or settings.default_region,
                rejects=args.rejects,
                file_format=args.format,
                batch_size=args.batch_size,
                progress=not args.no_progress,
            )
        except ImportFileError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        for line in summary_lines(summary):
            print(line)
        return 1 if summary.rejected else 0
    try:
        data = await export_customer(redis, settings, args.id)
    except UnknownCustomer as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
        print(f"wrote everything held about {args.id} to {args.output}")
    else:
        print(text)
    return 0
