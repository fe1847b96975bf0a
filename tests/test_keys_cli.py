"""`hub keys create|list|revoke` against the test's Redis, and the keys at work on the real API."""

from __future__ import annotations

import json

import pytest
import redis.asyncio as aioredis

from hub.config import hash_key
from tests.conftest import Hub, cli
from tests.events import make_event


async def create_key(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[str, str]:
    """Create a key through the CLI; returns (the key, its id)."""
    assert await cli(["keys", "create", *args]) == 0
    captured = capsys.readouterr()
    secret = captured.out.strip()
    assert secret.startswith("hub_") and len(secret) > 40 and "\n" not in secret
    key_id = captured.err.split()[1].rstrip(",")
    assert key_id.startswith("key_")
    return secret, key_id


async def list_keys(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    assert await cli(["keys", "list", "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_created_key_posts_events_as_its_source(hub_env: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    hub = hub_env
    secret, _ = await create_key(capsys, "--source", "route-planner", "--scope", "events")
    event = make_event()
    resp = await hub.post_event(event, key=secret)
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["status"] == "accepted"
    redis = aioredis.Redis.from_url(str(hub.settings.redis_url), decode_responses=True)
    try:
        # Events are idempotent per source: the record sits under the key's source.
        assert await redis.exists(f"hub:event:route-planner:{event['event_id']}") == 1
        assert await redis.exists(f"hub:event:default:{event['event_id']}") == 0
        # Redis holds the SHA-256 and never the key.
        everything = []
        for name in await redis.keys("*"):
            if await redis.type(name) == "hash":
                everything.append(json.dumps(await redis.hgetall(name)))
            everything.append(name)
        assert not any(secret in text for text in everything)
        assert await redis.hget(f"hub:apikey:{hash_key(secret)}", "source") == "route-planner"
    finally:
        await redis.aclose()


async def test_key_without_a_scope_is_forbidden(hub_env: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    hub = hub_env
    events_only, _ = await create_key(capsys, "--source", "oms", "--scope", "events")
    resp = await hub.request("GET", "/v1/messages?customer_id=C-77", key=events_only)
    assert resp.status == 403
    assert "'read'" in (await resp.json())["error"]["message"]
    reader, _ = await create_key(capsys, "--source", "dashboard", "--scope", "read")
    assert (await hub.request("GET", "/v1/messages?customer_id=C-77", key=reader)).status == 200
    assert (await hub.post_event(make_event(), key=reader)).status == 403
    # The default scopes are events and read.
    both, _ = await create_key(capsys, "--source", "crm")
    assert (await hub.post_event(make_event(), key=both)).status == 202
    assert (await hub.request("GET", "/v1/messages?customer_id=C-77", key=both)).status == 200


async def test_revoked_key_is_refused_at_once(hub_env: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    hub = hub_env
    secret, key_id = await create_key(capsys, "--source", "driver-app")
    assert (await hub.post_event(make_event(), key=secret)).status == 202
    assert await cli(["keys", "revoke", key_id]) == 0
    assert f"revoked {key_id}" in capsys.readouterr().out
    resp = await hub.post_event(make_event(), key=secret)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert await cli(["keys", "revoke", key_id]) == 0
    assert "already" in capsys.readouterr().out
    assert await cli(["keys", "revoke", "key_000000000000"]) == 1
    assert "no API key with id" in capsys.readouterr().err


async def test_list_shows_keys_but_never_a_secret(hub_env: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    first, first_id = await create_key(capsys, "--source", "oms", "--scope", "events", "--scope", "admin")
    second, second_id = await create_key(capsys, "--source", "crm", "--scope", "read")
    assert await cli(["keys", "revoke", second_id]) == 0
    capsys.readouterr()
    listed = await list_keys(capsys)
    by_id = {k["id"]: k for k in listed}
    assert set(by_id) == {first_id, second_id}
    assert by_id[first_id]["source"] == "oms" and by_id[first_id]["scopes"] == ["events", "admin"]
    assert by_id[first_id]["revoked_at"] is None and by_id[first_id]["created_at"]
    assert by_id[second_id]["revoked_at"]
    assert await cli(["keys", "list"]) == 0
    table = capsys.readouterr().out
    assert first_id in table and second_id in table and "REVOKED" in table
    for text in (table, json.dumps(listed)):
        assert first not in text and second not in text
        assert first[8:20] not in text  # not even a part past the shown prefix


async def test_bad_scope_or_source_is_a_clear_error(hub_env: Hub, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli(["keys", "create", "--source", "oms", "--scope", "write"]) == 2
    err = capsys.readouterr().err
    assert "unknown scope 'write'" in err and "events, read, erase, admin" in err
    assert await cli(["keys", "create", "--source", "bad source!"]) == 2
    assert "invalid source" in capsys.readouterr().err
    assert await list_keys(capsys) == []
