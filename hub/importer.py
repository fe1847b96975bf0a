"""Bulk customer import (CSV or JSON lines); the per-customer export is ``hub.export``.

Import streams the file: rows are validated one by one with the models the API uses
(``preferences.Contact``, ``preferences.Preferences``, the event schema's id rule) and written in
batches, one Redis pipeline per batch. Each row is one run of ``lua_records.IMPORT_CUSTOMER``, which compares
the row with what is stored and writes only when something differs, so a second run of the same
file rewrites nothing and counts every row as unchanged. Memory stays flat whatever the file's
size: a batch, the counters and one open rejects file.

A row sets the customer's contact exactly, like ``PUT /v1/customers/{id}`` (contact fields not in
the row are removed), and sets the preferences it names, like ``PATCH .../preferences`` (others
are kept). Rejected rows go to a CSV file with the reason for each.

Exceptions::

    ValueError
     └── ImportFileError     the file as a whole cannot be read (unknown columns, not UTF-8, ...)
    LookupError
     └── UnknownCustomer     export: no such customer
"""

from __future__ import annotations

import _csv
import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError
from redis.asyncio import Redis
from tqdm import tqdm

from preferences import Contact, Preferences, normalize_locale
from preferences.store import encode_contact

from . import keys, lua_records
from .clock import now_iso
from .masking import mask_numbers
from .schema import Customer, validation_fields
from .vocabulary import MILESTONES

__all__ = [
    "CSV_COLUMNS",
    "ImportFileError",
    "ImportSummary",
    "import_customers",
    "rejects_path_for",
    "summary_lines",
]

CSV_COLUMNS = (
    "id",
    "name",
    "phone",
    "email",
    "push_tokens",
    "locale",
    "timezone",
    "channels",
    "fallback",
    "quiet_hours",
    "instructions",
    "instructions_note",
    "opt_out",
)
"""Columns a CSV file may have (``id`` is required), besides ``channels.<milestone>``. The columns
``line`` and ``reason`` of a rejects file are ignored, so a corrected rejects file imports as is."""
_REJECT_COLUMNS = ("line", "reason")
_LIST_SEPARATOR = "|"
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class ImportFileError(ValueError):
    """The file cannot be imported at all (the message says why and where)."""


@dataclass
class ImportSummary:
    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejects_path: Path | None = None
    first_rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, id, reason), a few

    def line(self) -> str:
        return (
            f"read {self.read}, created {self.created}, updated {self.updated}, "
            f"unchanged {self.unchanged}, rejected {self.rejected}"
        )


@dataclass(frozen=True)
class _Row:
    id: str
    contact: dict[str, str]  # stored form (encode_contact)
    prefs: dict[str, str]  # "pref:<name>" -> JSON text, as CustomerStore.patch_preferences stores them


class _Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def rejects_path_for(path: Path) -> Path:
    """The default rejects file: ``FILE.rejected.csv`` next to the file."""
    return path.with_name(path.name + ".rejected.csv")


# -- reading ----------------------------------------------------------------------------------
def _lines(raw: IO[bytes], bar: tqdm[Any]) -> Iterator[tuple[int, str]]:
    """Decoded lines with their numbers (1-based), advancing the progress bar by bytes."""
    for number, chunk in enumerate(raw, start=1):
        bar.update(len(chunk))
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ImportFileError(f"line {number} is not UTF-8 ({e.reason} at byte {e.start})") from e
        yield number, text.removeprefix("\ufeff") if number == 1 else text


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(_LIST_SEPARATOR) if part.strip()]


def _check_header(header: list[str]) -> None:
    if "id" not in header:
        raise ImportFileError(f"the CSV header has no 'id' column (columns: {', '.join(CSV_COLUMNS)})")
    unknown = [
        c
        for c in header
        if c not in CSV_COLUMNS
        and c not in _REJECT_COLUMNS
        and not (c.startswith("channels.") and c.removeprefix("channels.") in MILESTONES)
    ]
    if unknown:
        raise ImportFileError(
            f"unknown CSV column {unknown[0]!r}; columns are {', '.join(CSV_COLUMNS)} and channels.<milestone>"
        )
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ImportFileError(f"the CSV header repeats the column {repeated[0]!r}")


def _csv_record(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row in the JSON lines shape: contact fields, ``id`` and ``preferences``."""
    cells = {k: v.strip() for k, v in row.items() if k not in _REJECT_COLUMNS and v and v.strip()}
    record: dict[str, Any] = {}
    prefs: dict[str, Any] = {}
    for name, value in cells.items():
        if name in ("id", "name", "phone", "email", "locale", "timezone"):
            record[name] = value
        elif name == "push_tokens":
            record[name] = _split(value)
        elif name == "channels":
            prefs.setdefault("channels", {})["default"] = _split(value)
        elif name.startswith("channels."):
            prefs.setdefault("channels", {})[name.removeprefix("channels.")] = _split(value)
        elif name in ("fallback", "opt_out"):
            prefs[name] = _split(value)
        elif name == "quiet_hours":
            start, sep, end = value.partition("-")
            if not sep:
                raise _Rejected("quiet_hours: write it as HH:MM-HH:MM, e.g. 21:00-08:00")
            prefs["quiet_hours"] = {"start": start.strip(), "end": end.strip()}
        elif name == "instructions":
            prefs.setdefault("instructions", {})["kind"] = value
        elif name == "instructions_note":
            prefs.setdefault("instructions", {})["note"] = value
    if "instructions" in prefs and "kind" not in prefs["instructions"]:
        raise _Rejected("instructions_note: give an instructions kind too (e.g. note)")
    if prefs:
        record["preferences"] = prefs
    return record


def _reason(error: ValidationError, prefix: str = "") -> str:
    return "; ".join(f"{prefix}{name}: {message}" for name, message in validation_fields(error).items())


_known_locale = lru_cache(maxsize=512)(normalize_locale)  # a file repeats a handful of locales


def _unknown_locale(value: Any, name: str) -> list[str]:
    """The API takes an unknown locale as none (the default applies); an import names it, since a
    file is checked before it is loaded and a typo there would silently change every message."""
    if isinstance(value, str) and value.strip() and _known_locale(value.strip()) is None:
        return [f"{name}: unknown locale {value.strip()!r}"]
    return []


def _validate(record: Any, region: str) -> _Row:
    """One customer object (the JSON lines shape) checked with the API's own models."""
    if not isinstance(record, dict):
        raise _Rejected("a customer must be a JSON object")
    data = dict(record)
    raw_id = data.pop("id", None)
    raw_prefs = data.pop("preferences", None)
    reasons: list[str] = []
    try:
        customer_id = Customer.model_validate({"id": raw_id}).id
    except ValidationError as e:
        reasons.append(_reason(e))
        customer_id = str(raw_id) if raw_id is not None else ""
    contact: dict[str, Any] = {}
    try:
        contact = Contact.model_validate(data, context={"region": region}).model_dump(exclude_none=True)
    except ValidationError as e:
        reasons.append(_reason(e))
    reasons += _unknown_locale(data.get("locale"), "locale")
    prefs: dict[str, Any] = {}
    if raw_prefs is not None:
        try:
            prefs = Preferences.model_validate(raw_prefs).model_dump(exclude_unset=True, mode="json")
        except ValidationError as e:
            reasons.append(_reason(e, "preferences."))
        if isinstance(raw_prefs, dict):
            reasons += _unknown_locale(raw_prefs.get("locale"), "preferences.locale")
    if reasons:
        raise _Rejected("; ".join(reasons))
    return _Row(customer_id, encode_contact(contact), {f"pref:{k}": json.dumps(v) for k, v in prefs.items()})


Rows = Iterator[tuple[int, str, Any, list[str] | str]]
"""(line, id, the record or why it cannot be one, the original row: CSV cells or the JSON line)."""


def _csv_rows(lines: Iterator[tuple[int, str]]) -> tuple[list[str], Rows]:
    """The header (without a rejects file's own columns) and the rows after it."""
    position = {"line": 0}

    def text() -> Iterator[str]:
        for number, line in lines:
            position["line"] = number
            yield line

    reader = csv.reader(text())
    header = [h.strip() for h in next(reader, [])]
    if not header:
        raise ImportFileError("the file is empty (a CSV file needs a header row)")
    _check_header(header)
    kept = [i for i, name in enumerate(header) if name not in _REJECT_COLUMNS]
    id_at = header.index("id")

    def rows() -> Rows:
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            row_id = cells[id_at].strip() if id_at < len(cells) else ""
            original = [cells[i] if i < len(cells) else "" for i in kept]
            if len(cells) != len(header):
                problem = _Rejected(f"{len(cells)} fields where the header has {len(header)}")
                yield position["line"], row_id, problem, original
                continue
            try:
                yield position["line"], row_id, _csv_record(dict(zip(header, cells, strict=True))), original
            except _Rejected as e:
                yield position["line"], row_id, e, original

    return [header[i] for i in kept], rows()


def _jsonl_rows(lines: Iterator[tuple[int, str]]) -> Rows:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield number, "", _Rejected(f"not valid JSON: {e.msg} (column {e.colno})"), line.rstrip("\r\n")
            continue
        except RecursionError:
            yield number, "", _Rejected("the JSON is nested too deeply"), line.rstrip("\r\n")
            continue
        row_id = record.get("id") if isinstance(record, dict) else None
        yield number, str(row_id) if row_id is not None else "", record, line.rstrip("\r\n")


# -- writing ----------------------------------------------------------------------------------
class _Writer:
    """Upserts rows in batches, one pipeline (one round trip) per batch."""

    def __init__(self, redis: Redis, summary: ImportSummary) -> None:
        self.redis = redis
        self.summary = summary
        self.script = redis.register_script(lua_records.IMPORT_CUSTOMER)
        self.batch: list[_Row] = []

    async def flush(self) -> None:
        if not self.batch:
            return
        now = now_iso()
        async with self.redis.pipeline(transaction=False) as pipe:
            for row in self.batch:
                row_keys = [keys.customer(row.id)]
                if "phone" in row.contact:
                    row_keys.append(keys.phone(row.contact["phone"]))
                await self.script(
                    keys=row_keys,
                    args=[json.dumps(row.contact), json.dumps(row.prefs), now, row.id],
                    client=pipe,
                )
            results = await pipe.execute()
        for result in results:
            outcome = int(result)
            if outcome == 1:
                self.summary.created += 1
            elif outcome == 2:
                self.summary.updated += 1
            else:
                self.summary.unchanged += 1
        self.batch = []


def _reject(
    out: _csv.Writer, summary: ImportSummary, line: int, row_id: str, reason: str, original: list[str] | str
) -> None:
    """Count a rejected row and write it to the rejects file (``out``, a CSV writer) as it was
    read, after its line and the reason: a CSV row keeps its columns, a JSON line its id."""
    summary.rejected += 1
    if len(summary.first_rejects) < 5:
        summary.first_rejects.append((line, row_id, reason))
    out.writerow([line, reason, *original] if isinstance(original, list) else [line, row_id, reason, original])


async def import_customers(
    redis: Redis,
    path: Path,
    *,
    region: str,
    rejects: Path | None = None,
    file_format: str | None = None,
    batch_size: int = 500,
    progress: bool = True,
) -> ImportSummary:
    """Import the customers in ``path`` (CSV, or JSON lines for .jsonl/.ndjson or ``file_format``)."""
    if batch_size < 1:
        raise ValueError("the batch size must be at least 1")
    fmt = file_format or ("jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "csv")
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r}; use csv or jsonl")
    if not path.is_file():
        raise ImportFileError(f"no such file: {path}")
    rejects_path = rejects or rejects_path_for(path)
    summary = ImportSummary(rejects_path=rejects_path)
    writer = _Writer(redis, summary)
    with (
        path.open("rb") as raw,
        rejects_path.open("w", newline="", encoding="utf-8") as out,
        tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            desc=f"importing {path.name}",
            disable=not progress,
            file=sys.stderr,
        ) as bar,
    ):
        rejected = csv.writer(out)
        lines = _lines(raw, bar)
        if fmt == "csv":
            header, rows = _csv_rows(lines)
            rejected.writerow(["line", "reason", *header])
        else:
            rows = _jsonl_rows(lines)
            rejected.writerow(["line", "id", "reason", "record"])
        for line, row_id, record, original in rows:
            summary.read += 1
            try:
                if isinstance(record, _Rejected):
                    raise record
                writer.batch.append(_validate(record, region))
            except _Rejected as e:
                _reject(rejected, summary, line, row_id, e.reason, original)
                continue
            if len(writer.batch) >= batch_size:
                await writer.flush()
                bar.set_postfix_str(summary.line(), refresh=False)
        await writer.flush()
    return summary


def summary_lines(summary: ImportSummary) -> list[str]:
    """What the CLI prints: the counts, where the rejects are, the first few reasons (masked)."""
    out = [summary.line()]
    if summary.rejected:
        out.append(f"rejected rows and reasons: {summary.rejects_path}")
        for line, row_id, reason in summary.first_rejects:
            out.append(mask_numbers(f"  line {line} ({row_id or 'no id'}): {reason}"))
        if summary.rejected > len(summary.first_rejects):
            out.append(f"  ... and {summary.rejected - len(summary.first_rejects)} more")
    return out
