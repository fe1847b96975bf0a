"""A provider takes a message and its answer is lost: "never twice" per channel.

The fakes' lost-answer faults (hub.sandbox.faults) record the message in the provider's ledger,
then hold the answer past the client's timeout (``accept-stall``) or close the connection
without it (``accept-drop``); ``drop`` closes it without recording anything. The adapters call
such a send ``in_doubt``; the hub reconciles SMS with Twilio's message list before sending again
and records e-mail and push ``unknown`` (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from twilio.rest import Client

from channels import InDoubtPolicy, Outbound
from channels import sms as sms_module
from channels.sms import _OriginHttpClient
from hub import keys, metrics
from hub.message import message_id
from hub.pipeline import Runtime
from hub.providers import build_channels
from hub.redis_server import free_port
from hub.sandbox import Faults
from hub.schema import parse_event
from proofs.chaos import ChaosResult
from tests.conftest import Hub, a_runtime
from tests.events import make_event
from tests.test_relay import CUSTOMER, DRIVER, RELAY, open_session, post_signed

# Every client gives up after half a second; a held answer waits far longer (until the sandbox
# closes): the hub never sees it.
SHORT = {"twilio.timeout": 0.5, "smtp.timeout": 0.5, "fcm.timeout": 0.5}
PHONE = "+4915112345678"
OTHER_PHONE = "+4915100000000"
# The paging fields of a Twilio list answer (besides the list itself).
PAGE_FIELDS = ("page", "page_size", "start", "end", "uri", "first_page_uri", "next_page_uri", "previous_page_uri")


async def messages(hub: Hub, delivery_id: str = "D-1001") -> dict[str, dict[str, Any]]:
    """The delivery's messages in the log, by channel."""
    listed = await (await hub.request("GET", f"/v1/messages?delivery_id={delivery_id}")).json()
    return {m["channel"]: m for m in listed["messages"]}


def steps(message: dict[str, Any]) -> list[str]:
    return [h["status"] for h in message["history"]]


async def everything_settled(hub: Hub) -> None:
    """Run the workers until nothing is left to try (every retry's time brought forward)."""
    for _ in range(4):
        await hub.run_worker()
        await hub.fast_forward(3600)
    await hub.run_worker()


def counter(channel: str, status: str) -> float:
    """``hub_messages_total`` of this process (the test's workers run in it)."""
    return metrics.REGISTRY.get_sample_value("hub_messages_total", {"channel": channel, "status": status}) or 0.0


def told(hub: Hub) -> dict[str, list[str]]:
    """The ``message.status`` webhooks upstream received, by channel."""
    out: dict[str, list[str]] = {}
    for w in hub.receiver.of_type("message.status"):
        out.setdefault(w["data"]["channel"], []).append(w["data"]["status"])
    return out


@pytest.mark.settings(**SHORT)
@pytest.mark.parametrize("mode", ["accept-stall", "accept-drop"])
async def test_a_lost_answer_after_the_provider_took_the_message_never_sends_it_twice(hub: Hub, mode: str) -> None:
    for provider in ("twilio", "fcm", "smtp"):
        hub.sandbox.faults.set(provider, mode, count=1)
    counted = {(c, s): counter(c, s) for c in ("sms", "push", "email") for s in ("in_doubt", "reconciled", "unknown")}
    assert (await hub.post_event(make_event("out_for_delivery"))).status == 202
    await everything_settled(hub)
    added = {k: counter(*k) - v for k, v in counted.items() if counter(*k) != v}
    assert added == {
        ("sms", "in_doubt"): 1,
        ("sms", "reconciled"): 1,
        ("push", "in_doubt"): 1,
        ("push", "unknown"): 1,
        ("email", "in_doubt"): 1,
        ("email", "unknown"): 1,
    }

    for channel in ("sms", "push", "email"):
        assert len(hub.messages(channel=channel)) == 1, channel  # each provider has it exactly once
    log = await messages(hub)
    # SMS: Twilio's list has it: recorded as sent, with the SID Twilio gave it, and not sent again.
    sms = log["sms"]
    assert sms["status"] == "accepted"
    assert sms["provider_id"] == hub.messages(channel="sms")[0]["provider_id"]
    assert steps(sms) == ["sending", "in_doubt", "sending", "accepted"], sms["history"]
    assert "found at the provider" in sms["history"][-1]["detail"]
    # E-mail and push cannot be looked up: unknown, with the reason, never sent again.
    for channel in ("push", "email"):
        assert log[channel]["status"] == "unknown", log[channel]
        assert steps(log[channel]) == ["sending", "unknown"]
        assert "not sent again" in log[channel]["error"]
    assert told(hub) == {"sms": ["accepted"], "push": ["unknown"], "email": ["unknown"]}
    listed = await (await hub.request("GET", "/v1/messages?status=unknown")).json()
    assert sorted(m["channel"] for m in listed["messages"]) == ["email", "push"]


@pytest.mark.settings(**SHORT)
@pytest.mark.parametrize("mode", ["drop", "timeout"])
async def test_an_sms_twilio_never_recorded_is_looked_up_then_sent_once(hub: Hub, mode: str) -> None:
    """The request reached Twilio and got no answer (the connection closed, or held past the
    client's timeout), and Twilio made no message: its list shows none, so it is sent again."""
    hub.sandbox.faults.timeout_seconds = 5.0  # "timeout": held past the client's 0.5 s
    hub.sandbox.faults.set("twilio", mode, count=1)
    assert (await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))).status == 202
    await everything_settled(hub)

    assert len(hub.messages(channel="sms")) == 1
    sms = (await messages(hub))["sms"]
    assert sms["status"] == "accepted"
    assert sms["provider_id"] == hub.messages(channel="sms")[0]["provider_id"]
    assert steps(sms) == ["sending", "in_doubt", "sending", "sending", "accepted"], sms["history"]
    assert "no such message" in sms["history"][3]["detail"]
    assert told(hub)["sms"] == ["accepted"]


@pytest.mark.settings(**{**SHORT, "twilio.timeout": 3.0, "worker.max_tries": 3})
async def test_an_sms_twilio_cannot_be_asked_about_stays_in_doubt_then_ends_unknown_unsent(hub: Hub) -> None:
    # Its lookup is due 3 s (the client's timeout) after the lost answer: beyond what one
    # worker run waits for, so the test can break Twilio's list in between.
    hub.sandbox.faults.set("twilio", "accept-drop", count=1)
    assert (await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))).status == 202
    await hub.run_worker()
    sms = (await messages(hub))["sms"]
    assert (sms["status"], steps(sms)) == ("transient", ["sending", "in_doubt"])
    assert len(hub.messages(channel="sms")) == 1

    hub.sandbox.faults.set("twilio", "500")  # every request, the list included
    for tries in (2, 3):
        await hub.fast_forward(60)
        await hub.run_worker()
        # The lost answer, then one lookup per try (each failing), and no send.
        assert hub.sandbox.faults.triggered("twilio") == 1 + (tries - 1)
    sms = (await messages(hub))["sms"]
    assert sms["status"] == "unknown"
    assert steps(sms) == ["sending", "in_doubt", "sending", "in_doubt", "sending", "unknown"]
    assert sms["error"].startswith("still in doubt after 3 tries")

    hub.sandbox.faults.clear()
    await everything_settled(hub)
    assert len(hub.messages(channel="sms")) == 1  # never sent blindly
    assert told(hub)["sms"] == ["unknown"]


@pytest.mark.settings(**{**SHORT, "worker.max_tries": 3, "worker.retry_base_delay": 5})
async def test_an_sms_in_doubt_after_failed_tries_still_gets_its_lookups(hub: Hub) -> None:
    """Transient failures before the doubt do not use up the lookups (found by the providers
    chaos run: an SMS failing during a Twilio 500 outage, then in doubt, ended unknown unsent)."""
    for mode in ("500", "500", "drop"):  # each try's retry is due seconds later: one try per run
        hub.sandbox.faults.set("twilio", mode, count=1)
        if mode == "500" and not hub.sandbox.faults.triggered("twilio"):
            assert (await hub.post_event(make_event("arriving_soon", data={"minutes": 10}))).status == 202
        await hub.run_worker()
        await hub.fast_forward(60)  # the retry is due (and the message not yet expired)
    assert steps((await messages(hub))["sms"])[-2:] == ["sending", "in_doubt"]  # on the last try allowed
    await hub.run_worker()
    assert len(hub.messages(channel="sms")) == 1
    sms = (await messages(hub))["sms"]
    assert sms["status"] == "accepted"
    assert steps(sms)[-4:] == ["in_doubt", "sending", "sending", "accepted"]  # looked up, none, sent


@pytest.mark.settings(**SHORT)
async def test_an_email_whose_connection_closed_during_data_unrecorded_ends_unknown_and_unsent(hub: Hub) -> None:
    """The price of ``unknown`` on a channel without a lookup: the sink took nothing, and the
    e-mail is not sent (upstream is told it is unknown)."""
    hub.sandbox.faults.set("smtp", "drop", count=1)
    assert (await hub.post_event(make_event("order_confirmed"))).status == 202
    await everything_settled(hub)
    assert hub.messages(channel="email") == []
    assert (await messages(hub))["email"]["status"] == "unknown"
    assert told(hub) == {"email": ["unknown"]}


@pytest.mark.settings(
    **SHORT, **{"policy.escalate_after_minutes": 10, "policy.escalate_milestones": ["delivery_failed"]}
)
async def test_a_push_in_doubt_the_app_does_not_confirm_is_escalated_to_sms_once(hub: Hub) -> None:
    await hub.request("PUT", "/v1/customers/C-77", json={"phone": PHONE, "push_tokens": ["fcm-token-1"]})
    await hub.request("PATCH", "/v1/customers/C-77/preferences", json={"channels": {"delivery_failed": ["push"]}})
    hub.sandbox.faults.set("fcm", "accept-drop", count=1)
    assert (await hub.post_event(make_event("delivery_failed"))).status == 202
    await hub.run_worker()
    assert (await messages(hub))["push"]["status"] == "unknown"
    await hub.fast_forward(11 * 60)
    await everything_settled(hub)
    assert len(hub.messages(channel="push")) == 1
    assert len(hub.messages(channel="sms")) == 1  # the push may not have arrived: the SMS stands in


@pytest.mark.settings(**SHORT)
@pytest.mark.sandbox(fault_timeout=5.0)
async def test_an_email_timed_out_before_data_is_sent_again_at_once_on_a_new_connection(hub: Hub) -> None:
    hub.sandbox.faults.set("smtp", "timeout", count=1)  # MAIL held past the client's timeout
    channels = build_channels(hub.settings)
    try:
        result = await channels["email"].send(Outbound("m-1", "email", "ana@example.com", "Hi", subject="Hi"))
    finally:
        for c in channels.values():
            await c.close()
    assert result.outcome == "accepted"
    assert hub.sandbox.faults.triggered("smtp") == 1 and len(hub.messages(channel="email")) == 1


@pytest.mark.settings(**SHORT)
async def test_failures_where_the_provider_surely_has_nothing_are_retried_not_in_doubt(hub: Hub) -> None:
    """Nothing listening (the connection refused), or an error answer: ``transient``."""
    closed = f"http://127.0.0.1:{free_port()}"
    settings = hub.settings.replace(**{"twilio.base_url": closed, "fcm.base_url": closed, "smtp.port": free_port()})
    channels = build_channels(settings)
    try:
        for channel, to in (("sms", PHONE), ("push", "fcm-token-1"), ("email", "ana@example.com")):
            result = await channels[channel].send(Outbound(f"m-{channel}", channel, to, "Hi", subject="Hi"))  # type: ignore[arg-type]
            assert result.outcome == "transient", (channel, result)
    finally:
        for c in channels.values():
            await c.close()
    channels = build_channels(hub.settings)
    try:
        for provider, channel, to in (("twilio", "sms", PHONE), ("smtp", "email", "ana@example.com")):
            hub.sandbox.faults.set(provider, "503", count=1)
            result = await channels[channel].send(Outbound(f"m-{channel}", channel, to, "Hi", subject="Hi"))  # type: ignore[arg-type]
            assert result.outcome == "transient", (channel, result)
        hub.sandbox.faults.set("fcm", "429", count=1)
        result = await channels["push"].send(Outbound("m-push", "push", "fcm-token-1", "Hi", subject="Hi"))
        assert result.outcome == "transient", result
    finally:
        for c in channels.values():
            await c.close()
    assert hub.messages() == []
    assert {name: c.in_doubt for name, c in channels.items()} == {
        "sms": InDoubtPolicy.RECONCILE,
        "email": InDoubtPolicy.UNKNOWN,
        "push": InDoubtPolicy.UNKNOWN,
        "whatsapp": InDoubtPolicy.RECONCILE,
    }


async def test_the_sms_lookup_finds_only_the_hubs_own_message(hub: Hub) -> None:
    channels = build_channels(hub.settings)
    sms = channels["sms"]
    try:
        sent = await sms.send(Outbound("m-1", "sms", PHONE, "It's at the door... 10-12 h"))
        assert sent.outcome == "accepted"
        before = time.time() - 60
        # Twilio's Smart Encoding may store curly quotes, an ellipsis and dashes as plain ones.
        found = await sms.reconcile(Outbound("m-1", "sms", PHONE, "It\u2019s at the door\u2026 10\u201312 h"), before)
        assert (found.outcome, found.provider_id) == ("accepted", sent.provider_id)
        for other in (
            Outbound("m-1", "sms", PHONE, "It's at the door... 11-12 h"),  # another text
            Outbound("m-1", "sms", "+4915199999999", "It's at the door... 10-12 h"),  # another number
        ):
            assert (await sms.reconcile(other, before)).outcome == "transient"
        # Made before the send in doubt: not it.
        assert (
            await sms.reconcile(Outbound("m-1", "sms", PHONE, "It's at the door... 10-12 h"), time.time() + 60)
        ).outcome == "transient"
    finally:
        for c in channels.values():
            await c.close()


async def test_the_sms_lookup_reads_every_page_and_past_its_bound_cannot_tell(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sms_module, "RECONCILE_PAGE_SIZE", 2)
    channels = build_channels(hub.settings)
    sms = channels["sms"]
    try:
        for i in range(5):
            assert (await sms.send(Outbound(f"m-{i}", "sms", PHONE, f"text {i}"))).outcome == "accepted"
        oldest = Outbound("m-0", "sms", PHONE, "text 0")  # on the third page, newest first
        assert (await sms.reconcile(oldest, time.time() - 60)).outcome == "accepted"
        monkeypatch.setattr(sms_module, "RECONCILE_PAGES", 2)
        assert (await sms.reconcile(oldest, time.time() - 60)).outcome == "in_doubt"
        assert (await sms.reconcile(Outbound("m-9", "sms", PHONE, "text 4"), time.time() - 60)).outcome == "accepted"
    finally:
        for c in channels.values():
            await c.close()


@pytest.mark.sandbox(status_callbacks=True, callback_delay=0.0)
async def test_the_twilio_fake_lists_messages_newest_first_filtered_and_paged_like_twilio(hub: Hub) -> None:
    tw = hub.settings.twilio
    http = _OriginHttpClient(tw.base_url, 5.0)
    client = Client(tw.account_sid, tw.auth_token, http_client=http)
    try:
        made = [
            await client.messages.create_async(to=PHONE if i % 2 else OTHER_PHONE, from_=tw.from_number, body=f"m{i}")
            for i in range(7)
        ]
        mine = [m.sid for m in reversed(made) if m.to == PHONE]
        page = await client.messages.page_async(to=PHONE, page_size=2)
        seen: list[str] = []
        while page is not None:
            seen += [m.sid for m in page]
            page = await page.next_page_async()
        assert seen == mine  # newest first, every page reached through next_page_uri
        assert [m.sid for m in await client.messages.list_async(to=PHONE, from_=tw.from_number)] == mine
        assert await client.messages.list_async(from_="+15009999999") == []
        # DateSent filters on the sent date (twilio-python sends times), once there is one.
        await hub.ledger.wait_for(lambda e: e.meta.get("status") == "delivered", count=7)
        now = datetime.now(UTC)
        assert len(await client.messages.list_async(to=PHONE, date_sent_after=now - timedelta(minutes=5))) == 3
        assert await client.messages.list_async(to=PHONE, date_sent_after=now + timedelta(days=2)) == []
        assert len(await client.messages.list_async(to=PHONE, date_sent_before=now + timedelta(days=2))) == 3
        assert len(await client.messages.list_async(date_sent=now)) == 7
        resp = await hub.http.get(
            f"{tw.base_url}/2010-04-01/Accounts/{tw.account_sid}/Messages.json",
            params={"To": PHONE, "PageSize": "2"},
            headers={"Authorization": _basic(tw.account_sid, tw.auth_token)},
        )
        body = await resp.json()
        assert set(body) == {*PAGE_FIELDS, "messages"}
        assert (body["page"], body["page_size"], body["start"], body["end"], body["previous_page_uri"]) == (
            0,
            2,
            0,
            1,
            None,
        )
        assert body["next_page_uri"].startswith(f"/2010-04-01/Accounts/{tw.account_sid}/Messages.json?To=%2B49")
    finally:
        await http.close()


@pytest.mark.sandbox(status_callbacks=False)
async def test_the_twilio_fake_leaves_a_message_not_yet_sent_out_of_date_sent_filters(hub: Hub) -> None:
    tw = hub.settings.twilio
    http = _OriginHttpClient(tw.base_url, 5.0)
    client = Client(tw.account_sid, tw.auth_token, http_client=http)
    try:
        queued = await client.messages.create_async(to=PHONE, from_=tw.from_number, body="queued")
        assert queued.date_sent is None
        assert [m.sid for m in await client.messages.list_async(to=PHONE)] == [queued.sid]
        assert await client.messages.list_async(to=PHONE, date_sent_after=datetime.now(UTC) - timedelta(days=1)) == []
    finally:
        await http.close()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_lost_answer_faults_are_taken_where_a_message_is_created() -> None:
    faults = Faults()
    faults.set("twilio", "accept-drop", count=1)
    reads = ("500", "503", "429", "timeout", "refuse", "drop")
    assert faults.take("twilio", reads) is None  # a list or fetch does not consume it
    assert faults.take("twilio", ("accept-stall", "accept-drop")) == "accept-drop"
    assert faults.get("twilio") is None


def test_the_chaos_verdict_counts_an_unknown_message_the_provider_never_got_as_lost() -> None:
    def run(**figures: Any) -> ChaosResult:
        r = ChaosResult("lost-answers", 10, 10, 20, sent_once=20)
        for name, value in figures.items():
            setattr(r, name, value)
        return r

    assert run().ok()
    assert run(unknown_received=3, statuses={"accepted": 17, "unknown": 3}).ok()  # unknown, yet delivered once
    lost = run(sent_once=19, missing=1, missing_by_status={"unknown": 1}, statuses={"accepted": 19, "unknown": 1})
    assert lost.lost == 1 and not lost.ok()
    assert not run(doubled=1).ok()
    assert not run(sent_once=19, missing=1, missing_by_status={"none": 1}).ok()


# -- a provider call cut off by a worker's crash ------------------------------------------------


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 30.0) -> None:
    """Wait until ``check()`` holds: for what the sandbox and the hub's API do on their own."""
    deadline = time.monotonic() + timeout
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def queued(event: dict[str, Any]) -> dict[str, Any]:
    """An event as the API puts it on the queue (validated, normalized)."""
    return parse_event(event, "DE").to_job()


def ids_of(event: dict[str, Any]) -> dict[str, str]:
    """The event's message ids (``arriving_soon``: SMS and push), by channel."""
    return {
        "sms": message_id("default", event["event_id"], "sms", PHONE),
        "push": message_id("default", event["event_id"], "push", "fcm-token-1"),
    }


async def message(hub: Hub, mid: str) -> dict[str, Any]:
    found: dict[str, Any] = await (await hub.request("GET", f"/v1/messages/{mid}")).json()
    return found


async def cut_off(hub: Hub, runtime: Runtime, event: dict[str, Any], *, recorded: bool) -> None:
    """The event's first try killed (``kill -9``) during its provider calls, as the next handler
    finds it once the sending lease is over: each message ``sending`` under the dead handler's
    claim, claimed a lease ago. Twilio got the request and recorded the SMS (``recorded``:
    ``accept-stall``) or not (``timeout``); FCM recorded the push (``accept-stall``). No answer
    reached the hub, and nothing it would have done after the calls was done."""
    hub.sandbox.faults.set("twilio", "accept-stall" if recorded else "timeout", count=1)
    hub.sandbox.faults.set("fcm", "accept-stall", count=1)
    first_try = asyncio.create_task(runtime.process("default", event))
    faults = hub.sandbox.faults
    await until(lambda: faults.triggered("twilio") == 1 and faults.triggered("fcm") == 1)
    first_try.cancel()  # the worker dies: the calls' answers, and everything after them, are gone
    with contextlib.suppress(asyncio.CancelledError):
        await first_try
    lease_ms = int((hub.settings.worker.job_timeout + 5) * 1000)
    for mid in ids_of(event).values():
        fields = await runtime.redis.hgetall(keys.message(mid))
        assert fields["status"] == "sending" and fields["claim"], fields
        await runtime.redis.hset(keys.message(mid), "claimed_ms", str(int(fields["claimed_ms"]) - lease_ms - 1000))


@pytest.mark.sandbox(status_callbacks=True, callback_delay=0.0)
async def test_an_sms_cut_off_by_a_crash_that_twilio_has_is_recorded_sent_and_not_sent_again(hub: Hub) -> None:
    event = queued(make_event("arriving_soon", data={"minutes": 10}))
    ids = ids_of(event)
    reconciled = counter("sms", "reconciled")
    async with a_runtime(hub) as runtime:
        await cut_off(hub, runtime, event, recorded=True)
        [sent] = hub.messages(channel="sms")
        parked = keys.pending_status(sent["provider_id"])

        async def parked_delivered() -> bool:
            # Twilio's status callbacks came while the hub did not know the SID: kept for later.
            raw = await runtime.redis.get(parked)
            return raw is not None and '"delivered"' in raw

        await until(parked_delivered)
        outcome = await runtime.process("default", event, 2)  # the event job's next try
    assert (outcome.messages[ids["sms"]], outcome.messages[ids["push"]]) == ("accepted", "unknown")
    await everything_settled(hub)

    assert len(hub.messages(channel="sms")) == 1 and len(hub.messages(channel="push")) == 1
    sms = await message(hub, ids["sms"])
    assert sms["provider_id"] == sent["provider_id"]  # the SID Twilio gave it
    assert steps(sms)[:2] == ["sending", "accepted"], sms["history"]
    assert "found at the provider" in sms["history"][1]["detail"]
    assert sms["status"] == "delivered"  # the parked callbacks applied, as after any send
    assert counter("sms", "reconciled") == reconciled + 1
    assert (await message(hub, ids["push"]))["status"] == "unknown"  # no lookup for push: as before
    assert sorted(told(hub)["sms"]) == ["accepted", "delivered", "sent"]
    assert told(hub)["push"] == ["unknown"]


async def test_an_sms_cut_off_by_a_crash_that_twilio_never_recorded_is_looked_up_then_sent_once(hub: Hub) -> None:
    event = queued(make_event("arriving_soon", data={"minutes": 10}))
    ids = ids_of(event)
    async with a_runtime(hub) as runtime:
        await cut_off(hub, runtime, event, recorded=False)
        outcome = await runtime.process("default", event, 2)
    assert outcome.messages[ids["sms"]] == "transient"  # not sent here: a retry that looks it up first
    assert hub.messages(channel="sms") == []
    await everything_settled(hub)

    [sent] = hub.messages(channel="sms")
    sms = await message(hub, ids["sms"])
    assert (sms["status"], sms["provider_id"]) == ("accepted", sent["provider_id"])
    # Cut off; looked up, none: in doubt, with a retry; looked up again, none; sent.
    assert steps(sms) == ["sending", "in_doubt", "sending", "sending", "accepted"], sms["history"]
    assert "a worker stopped during the provider call" in sms["history"][1]["detail"]
    assert "no such message" in sms["history"][3]["detail"]
    assert told(hub)["sms"] == ["accepted"]


@pytest.mark.settings(**{"worker.max_tries": 3})
async def test_an_sms_cut_off_by_a_crash_whose_lookup_keeps_failing_ends_unknown_unsent(hub: Hub) -> None:
    event = queued(make_event("arriving_soon", data={"minutes": 10}))
    ids = ids_of(event)
    async with a_runtime(hub) as runtime:
        await cut_off(hub, runtime, event, recorded=False)
        hub.sandbox.faults.set("twilio", "500")  # every request, the list included
        assert (await runtime.process("default", event, 2)).messages[ids["sms"]] == "transient"
    for _ in range(2):
        await hub.fast_forward(60)
        await hub.run_worker()
    assert hub.sandbox.faults.triggered("twilio") == 1 + 3  # the cut-off call, then three lookups: no send
    sms = await message(hub, ids["sms"])
    assert sms["status"] == "unknown"
    assert steps(sms) == ["sending", "in_doubt", "sending", "in_doubt", "sending", "unknown"], sms["history"]
    assert sms["error"].startswith("still in doubt after 3 tries")

    hub.sandbox.faults.clear()
    await everything_settled(hub)
    assert hub.messages(channel="sms") == []  # never sent blindly
    assert told(hub)["sms"] == ["unknown"]


async def test_an_sms_cut_off_by_a_crash_of_an_event_since_outdated_is_still_looked_up(hub: Hub) -> None:
    """The event's next try finds a newer event applied (it is stale): the messages its first
    try left ``sending`` go to jobs of their own, which look the SMS up as above."""
    event = queued(make_event("arriving_soon", data={"minutes": 10}))
    ids = ids_of(event)
    async with a_runtime(hub) as runtime:
        await cut_off(hub, runtime, event, recorded=True)
        [sent] = hub.messages(channel="sms")
        await runtime.process("default", queued(make_event("delivered", occurred_at="2026-11-24T08:20:00+01:00")))
        assert (await runtime.process("default", event, 2)).status == "stale"
    await everything_settled(hub)

    sms = await message(hub, ids["sms"])
    assert (sms["status"], sms["provider_id"]) == ("accepted", sent["provider_id"])
    assert steps(sms) == ["sending", "accepted"], sms["history"]
    assert [m["text"] for m in hub.messages(channel="sms")].count(sent["text"]) == 1
    assert (await message(hub, ids["push"]))["status"] == "unknown"


@pytest.mark.settings(**RELAY)
async def test_a_relayed_text_whose_answer_was_lost_is_logged_unknown_and_not_sent_again(hub: Hub) -> None:
    """A text between driver and customer is forwarded at most once: no lookup, no resend, and
    the relay log says the hub does not know (not that the forward failed)."""
    session = await open_session(hub)
    customer_proxy = session["participants"]["customer"]["proxy_number"]
    hub.sandbox.faults.set("twilio", "accept-drop", count=1)  # Twilio takes it; the answer is lost
    form = {"MessageSid": "SMrelay1", "From": CUSTOMER, "To": customer_proxy, "Body": "Gate code 4711"}
    before = metrics.REGISTRY.get_sample_value("hub_relay_texts_total", {"outcome": "unknown"}) or 0.0
    for _ in range(2):  # Twilio's webhook, and its retry
        assert (await post_signed(hub, "/webhooks/twilio/sms", form)).status == 200
    assert [m["text"] for m in hub.messages(channel="sms") if m["to"] == DRIVER] == ["Gate code 4711"]
    log = (await (await hub.request("GET", "/v1/deliveries/D-1001/relay")).json())["interactions"]
    assert [(i["direction"], i["kind"], i["status"]) for i in log] == [("customer->driver", "sms", "unknown")]
    assert metrics.REGISTRY.get_sample_value("hub_relay_texts_total", {"outcome": "unknown"}) == before + 1


async def test_an_sms_cut_off_by_a_crash_whose_retry_finds_it_expired_is_still_resolved(hub: Hub) -> None:
    """The event's next try comes after the news expired: the message is not left ``sending`` for
    good (dropping it finds it in doubt), and the SMS Twilio has is recorded, not sent again."""
    event = queued(make_event("arriving_soon", data={"minutes": 10}))
    ids = ids_of(event)
    async with a_runtime(hub) as runtime:
        await cut_off(hub, runtime, event, recorded=True)
        hub.now += 2 * 86_400  # long after the news expired
        outcome = await runtime.process("default", event, 2)
    await everything_settled(hub)
    assert (outcome.messages[ids["sms"]], outcome.messages[ids["push"]]) == ("accepted", "unknown")
    assert len(hub.messages(channel="sms")) == 1
    assert (await message(hub, ids["sms"]))["status"] != "sending"


# The crash comes before the webhooks are made, so none was POSTed either: through the queue only.
@pytest.mark.settings(**{"webhooks.direct_concurrency": 0})
async def test_a_status_whose_webhook_a_crash_cut_off_is_told_when_the_event_runs_again(hub: Hub) -> None:
    """A worker killed between recording ``accepted`` and creating its ``message.status`` webhook:
    the event job's next try finds the message sent, sends nothing, and makes the webhook."""
    event = queued(make_event("arriving_soon", data={"minutes": 10}))
    ids = ids_of(event)
    async with a_runtime(hub) as runtime:
        await runtime.process("default", event)
        await runtime.settle()
        # What the crash leaves: the statuses recorded, their webhooks never created.
        async for key in runtime.redis.scan_iter("hub:wh:wh_*"):
            await runtime.redis.delete(key)
        await runtime.redis.delete(hub.settings.webhooks.queue_name)
        outcome = await runtime.process("default", event, 2)
        await runtime.settle()
    assert outcome.messages[ids["sms"]] == "accepted" and len(hub.messages(channel="sms")) == 1
    await hub.run_worker()
    assert told(hub) == {"sms": ["accepted"], "push": ["accepted"]}
