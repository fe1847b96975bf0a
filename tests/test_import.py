"""`hub customers import` (CSV and JSON lines) and `hub customers export`, on the test's Redis and API."""

from __future__ import annotations

import csv
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from hub.cli import main
from tests.conftest import ADMIN_KEY, Hub, cli
from tests.events import make_event

CSV_TEXT = """\
id,name,phone,email,locale,timezone,channels,channels.delivered,fallback,quiet_hours,instructions,instructions_note,opt_out
C-1,Ana,+49 151 12345678,ana@example.com,de-DE,Europe/Berlin,sms|email,email,push|sms|email,21:00-08:00,note,Blue door,
C-2,Ben Okafor,0151 23456789,ben@example.com,de_at,Europe/Vienna,email,,,,,,sms
C-3,Bad Phone,12345,c3@example.com,de-DE,Europe/Berlin,,,,,,,
C-4,Bad Mail,+4915112345679,c4@,de-DE,Europe/Berlin,,,,,,,
C-5,Unknown Locale,+4915112345670,c5@example.com,zz,Europe/Berlin,,,,,,,
C-6,Bad Zone,+4915112345671,c6@example.com,de-DE,Mars/Olympus,,,,,,,
C-7,Bad Channel,+4915112345672,c7@example.com,de-DE,Europe/Berlin,sms|fax,,,,,,
"""

JSONL_ROWS: list[dict[str, Any] | str] = [
    {
        "id": "J-1",
        "name": "Chloé Martin",
        "phone": "+33 6 12 34 56 78",
        "email": "chloe@example.fr",
        "push_tokens": ["fcm-token-j1"],
        "locale": "fr-FR",
        "timezone": "Europe/Paris",
        "preferences": {"channels": {"default": ["push", "sms"]}, "opt_out": ["email"]},
    },
    {"id": "J-2", "email": "dev@example.com"},
    {"id": "J-3", "phone": "not a number"},
    {"id": "J-4", "email": "nobody@", "preferences": {"fallback": ["sms", "pigeon"]}},
    "{this is not json",
    {"id": "J-5", "name": "Extra", "shoe_size": 43},
]


def rejects_of(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


async def customer(hub: Hub, customer_id: str) -> dict[str, Any]:
    resp = await hub.request("GET", f"/v1/customers/{customer_id}?reveal=1", key=ADMIN_KEY)
    assert resp.status == 200, await resp.text()
    body: dict[str, Any] = await resp.json()
    return body


async def test_csv_import_validates_rows_and_lists_rejects(
    hub_env: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = hub_env
    path = tmp_path / "customers.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    assert await cli(["customers", "import", str(path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "read 7, created 2, updated 0, unchanged 0, rejected 5" in out
    assert str(tmp_path / "customers.csv.rejected.csv") in out
    # The console shows reasons but no phone number or address in full.
    assert "+4915112345679" not in out and "c4@" not in out and "c5@example.com" not in out

    rejects = {r["id"]: r for r in rejects_of(tmp_path / "customers.csv.rejected.csv")}
    assert set(rejects) == {"C-3", "C-4", "C-5", "C-6", "C-7"}
    assert rejects["C-3"]["line"] == "4" and rejects["C-3"]["reason"].startswith("phone: not a valid phone number")
    assert rejects["C-4"]["reason"].startswith("email: not a valid e-mail address")
    assert rejects["C-5"]["reason"] == "locale: unknown locale 'zz'"
    assert rejects["C-6"]["reason"] == "timezone: unknown IANA time zone 'Mars/Olympus'"
    assert rejects["C-7"]["reason"].startswith("preferences.channels.default.1: Input should be 'sms', 'email'")
    assert rejects["C-4"]["email"] == "c4@"  # the row as it was, to correct and import again

    ana = await customer(hub, "C-1")
    assert ana["phone"] == "+4915112345678" and ana["email"] == "ana@example.com"
    assert ana["locale"] == "de-DE" and ana["timezone"] == "Europe/Berlin"
    assert ana["preferences"] == {
        "channels": {"default": ["sms", "email"], "delivered": ["email"]},
        "fallback": ["push", "sms", "email"],
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "instructions": {"kind": "note", "note": "Blue door"},
    }
    ben = await customer(hub, "C-2")
    assert ben["phone"] == "+4915123456789" and ben["locale"] == "de-AT"  # national format, region DE
    assert ben["preferences"] == {"channels": {"default": ["email"]}, "opt_out": ["sms"]}
    for missing in ("C-3", "C-7"):
        assert (await hub.request("GET", f"/v1/customers/{missing}")).status == 404
    # The masked view of the API stays masked for imported customers too.
    assert (await (await hub.request("GET", "/v1/customers/C-1")).json())["phone"] != "+4915112345678"

    # A corrected rejects file imports as it is (its line and reason columns are ignored).
    rejects_file = tmp_path / "customers.csv.rejected.csv"
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(rejects_file.read_text(encoding="utf-8").replace(",12345,", ",+4915112345699,"), encoding="utf-8")
    assert await cli(["customers", "import", str(fixed), "--no-progress"]) == 1
    assert "read 5, created 1, updated 0, unchanged 0, rejected 4" in capsys.readouterr().out
    assert (await customer(hub, "C-3"))["phone"] == "+4915112345699"


async def test_importing_twice_changes_nothing(
    hub_env: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = hub_env
    path = tmp_path / "customers.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    assert await cli(["customers", "import", str(path), "--no-progress"]) == 1
    capsys.readouterr()
    client = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        before = {c: await client.hgetall(f"hub:customer:{c}") for c in ("C-1", "C-2")}
        assert await cli(["customers", "import", str(path), "--no-progress", "--batch-size", "1"]) == 1
        assert "read 7, created 0, updated 0, unchanged 2, rejected 5" in capsys.readouterr().out
        after = {c: await client.hgetall(f"hub:customer:{c}") for c in ("C-1", "C-2")}
        assert after == before  # not even updated_at was rewritten

        # One changed cell updates that customer only; a contact left out is removed (PUT semantics).
        path.write_text(CSV_TEXT.replace("Ben Okafor,0151 23456789", "Ben Okafor,"), encoding="utf-8")
        assert await cli(["customers", "import", str(path), "--no-progress"]) == 1
        assert "read 7, created 0, updated 1, unchanged 1, rejected 5" in capsys.readouterr().out
        ben = await customer(hub, "C-2")
        assert ben["phone"] is None and ben["email"] == "ben@example.com"
        assert ben["preferences"]["opt_out"] == ["sms"]
        assert await client.hgetall("hub:customer:C-1") == before["C-1"]
    finally:
        await client.aclose()


async def test_jsonl_import_and_rejects_file_option(
    hub_env: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = hub_env
    path = tmp_path / "customers.jsonl"
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in JSONL_ROWS]
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n", encoding="utf-8")
    rejects_path = tmp_path / "out" / "bad.csv"
    rejects_path.parent.mkdir()
    argv = ["customers", "import", str(path), "--rejects", str(rejects_path), "--no-progress"]
    assert await cli(argv) == 1
    assert "read 6, created 2, updated 0, unchanged 0, rejected 4" in capsys.readouterr().out
    rejects = rejects_of(rejects_path)
    assert [r["line"] for r in rejects] == ["4", "5", "6", "7"]  # line 3 is blank, not a row
    by_line = {r["line"]: r for r in rejects}
    assert by_line["4"]["id"] == "J-3" and by_line["4"]["reason"].startswith("phone: not a phone number")
    assert "email: not a valid e-mail address" in by_line["5"]["reason"]
    assert "preferences.fallback.1: Input should be 'sms', 'email', 'push' or 'whatsapp'" in by_line["5"]["reason"]
    assert by_line["6"]["reason"].startswith("not valid JSON") and by_line["6"]["record"] == "{this is not json"
    assert by_line["7"]["reason"] == "shoe_size: Extra inputs are not permitted"
    assert json.loads(by_line["7"]["record"]) == JSONL_ROWS[5]

    chloe = await customer(hub, "J-1")
    assert chloe["name"] == "Chloé Martin" and chloe["phone"] == "+33612345678"
    assert chloe["push_tokens"] == ["fcm-token-j1"]
    assert chloe["preferences"] == {"channels": {"default": ["push", "sms"]}, "opt_out": ["email"]}
    assert (await customer(hub, "J-2"))["email"] == "dev@example.com"
    assert await cli(argv) == 1
    assert "read 6, created 0, updated 0, unchanged 2, rejected 4" in capsys.readouterr().out


async def test_a_file_that_cannot_be_read_is_an_error(
    hub_env: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("id,name,shoe_size\nC-1,Ana,43\n", encoding="utf-8")
    assert await cli(["customers", "import", str(path), "--no-progress"]) == 2
    assert "unknown CSV column 'shoe_size'" in capsys.readouterr().err
    path.write_bytes(b"id,name\nC-1,Ana\nC-2,\xff\xfe\n")
    assert await cli(["customers", "import", str(path), "--no-progress"]) == 2
    assert "line 3 is not UTF-8" in capsys.readouterr().err
    assert await cli(["customers", "import", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


async def test_export_holds_contact_preferences_deliveries_and_messages(
    hub_env: Hub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub = hub_env
    assert (await hub.post_event(make_event("out_for_delivery"))).status == 202
    await hub.run_worker()
    resp = await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"opt_out": ["push"]})
    assert resp.status == 200
    assert await cli(["customers", "export", "C-77"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["customer"]["id"] == "C-77"
    assert data["customer"]["phone"] == "+4915112345678"  # unmasked: it is the customer's own data
    assert data["customer"]["email"] == "ana@example.com"
    assert data["preferences"] == {"opt_out": ["push"]}
    assert data["opt_outs"] == {"channels": ["push"], "sms_stop": None}
    [delivery] = data["deliveries"]
    assert delivery["id"] == "D-1001" and delivery["status"] == "out_for_delivery"
    assert [entry["type"] for entry in delivery["timeline"]] == ["out_for_delivery"]
    listed = await (await hub.request("GET", "/v1/messages?customer_id=C-77")).json()
    assert listed["messages"], "the event should have produced messages"
    assert sorted(m["id"] for m in data["messages"]) == sorted(m["id"] for m in listed["messages"])
    assert {m["to"] for m in data["messages"]} >= {"+4915112345678"}
    assert all(m["history"] for m in data["messages"])

    out = tmp_path / "c77.json"
    assert await cli(["customers", "export", "C-77", "--output", str(out)]) == 0
    assert "+4915112345678" not in capsys.readouterr().out
    assert json.loads(out.read_text(encoding="utf-8"))["customer"]["id"] == "C-77"
    assert await cli(["customers", "export", "C-404"]) == 1
    assert "no customer with id 'C-404'" in capsys.readouterr().err


def _write_big_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["id", "name", "phone", "email", "locale", "timezone", "channels"])
        for n in range(rows):
            phone = f"+49151{n:08d}" if n % 1000 else "12345"  # every 1000th row is rejected
            out.writerow([f"B-{n}", f"Customer {n}", phone, f"c{n}@example.com", "de-DE", "Europe/Berlin", "sms|email"])


class RssPeak:
    """Samples this process's resident memory in a thread; ``growth`` is the peak over the start."""

    def __init__(self) -> None:
        self.start = self.peak = self.rss()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss() -> int:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _sample(self) -> None:
        while not self.stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssPeak:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


# About a minute on two cores (validation with phonenumbers and email-validator is most of it),
# so it is kept out of the default run with the `large` marker: `make large` (CI runs it).
@pytest.mark.slow
@pytest.mark.large
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads resident memory from /proc")
def test_a_large_file_imports_in_bounded_memory(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = 100_000
    path = tmp_path / "big.csv"
    _write_big_csv(path, rows)
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    monkeypatch.setenv("HUB_SECRET_KEY", "test-secret")
    # Warm up: the first import loads the validators' data (phone metadata, locales), which stays.
    warm = tmp_path / "warm.csv"
    _write_big_csv(warm, 600)
    assert main(["customers", "import", str(warm), "--no-progress"]) == 1
    capsys.readouterr()
    started = time.monotonic()
    with RssPeak() as memory:
        code = main(["customers", "import", str(path), "--no-progress"])
    elapsed = time.monotonic() - started
    assert code == 1
    out = capsys.readouterr().out
    # The warm-up file's 600 rows were the first 600 of this one (one of them rejected).
    assert f"read {rows}, created {rows - 100 - 599}, updated 0, unchanged 599, rejected 100" in out
    assert len(rejects_of(tmp_path / "big.csv.rejected.csv")) == 100
    # The file is ~7 MB; held whole as rows it would take well over 100 MB. A batch at a time:
    # a few MB.
    assert memory.growth < 48 * 1024 * 1024, f"resident memory grew {memory.growth / 1e6:.1f} MB"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert client.hget("hub:customer:B-99999", "phone") == "+4915100099999"
        assert client.exists("hub:customer:B-1000") == 0
    finally:
        client.close()
    print(f"imported {rows} rows in {elapsed:.1f} s, resident memory +{memory.growth / 1e6:.1f} MB")
