"""One masking helper for the API's masked views and every log line, the sandbox's included."""

from __future__ import annotations

import logging

import pytest

from hub.masking import mask, mask_email, mask_numbers, mask_phone, mask_token
from hub.sandbox import Ledger, LedgerEntry


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        ("+4915112345678", "+49*******5678"),
        ("+15005550001", "+15*****0001"),
        ("+49123456", "+49**3456"),
        ("015112345678", "********5678"),
        # Short values (test numbers, typos) keep only two digits: a country code and four
        # digits would leave nothing hidden.
        ("+4912345", "******45"),
        ("+1555", "***55"),
        ("1234", "****"),
        # A channel address keeps its channel.
        ("whatsapp:+4915112345678", "whatsapp:+49*******5678"),
    ],
)
def test_a_phone_number_keeps_at_most_its_country_code_and_last_four_digits(number: str, masked: str) -> None:
    assert mask_phone(number) == masked
    assert len(mask_phone(number) or "") == len(number)


def test_an_email_address_keeps_its_first_letter_and_domain() -> None:
    assert mask_email("ana.weber@example.com") == "a***@example.com"
    assert mask_email("not an address") == "not an address"  # nothing to take apart


def test_a_push_token_keeps_a_short_prefix() -> None:
    assert mask_token("fcm-token-1") == "fcm-…"
    assert mask_token("short") == "…"


def test_nothing_to_mask_stays_nothing() -> None:
    for helper in (mask_phone, mask_email, mask_token):
        assert helper(None) is None
        assert helper("") == ""


def test_mask_picks_the_helper_by_channel() -> None:
    assert mask("sms", "+4915112345678") == "+49*******5678"
    assert mask("email", "ana@example.com") == "a***@example.com"
    assert mask("push", "/topics/news") == "/top…"


def test_numbers_and_addresses_inside_text_are_masked() -> None:
    text = "21211: the 'To' number +49 151 1234 5678 is not valid; bounced: ana.weber@example.com"
    assert mask_numbers(text) == "21211: the 'To' number +49*******5678 is not valid; bounced: a***@example.com"


def test_the_sandbox_ledger_logs_each_recipient_masked_for_its_channel(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="hub.sandbox")
    ledger = Ledger()
    for channel, to in (("sms", "+4915112345678"), ("email", "ana@example.com"), ("push", "fcm-token-1")):
        entry = ledger.record(LedgerEntry(channel=channel, to=to))  # type: ignore[arg-type]
        assert entry.to_dict()["to"] == to  # the ledger itself keeps the address: the page shows it
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.sandbox.ledger"]
    assert [line.split(" (")[0] for line in lines] == [
        "ledger: sms to +49*******5678",
        "ledger: email to a***@example.com",
        "ledger: push to fcm-…",
    ]
