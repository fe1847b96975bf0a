"""Property-based checks: parsers and verifiers never crash on hostile input."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.replies import parse_reply
from hub.schema import EventInvalid, parse_event
from hub.signing import signature_header, verify

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@given(st.text(max_size=200))
def test_any_reply_parses_to_a_known_kind(body: str) -> None:
    reply = parse_reply(body)
    assert reply.kind in {"stop", "start", "help", "number", "instructions", "text", "empty"}
    if reply.kind == "number":
        assert reply.number is not None and 0 <= reply.number <= 99


@given(
    st.integers(min_value=0, max_value=99),
    st.sampled_from(["", ".", ")", " ", "!"]),
    st.sampled_from(["", "option ", "Option ", "Nr. ", "opción ", "choix ", "#"]),
)
def test_any_slot_number_in_any_form_is_read_back(n: int, suffix: str, prefix: str) -> None:
    reply = parse_reply(f"{prefix}{n}{suffix}")
    assert (reply.kind, reply.number) == ("number", n)


@given(st.text(max_size=120), st.binary(max_size=200))
def test_signature_verification_never_raises_on_hostile_headers(header: str, body: bytes) -> None:
    assert verify("s" * 20, header, body) in (True, False)


@given(st.binary(max_size=300), st.integers(min_value=1_600_000_000, max_value=2_000_000_000))
def test_a_signature_verifies_exactly_its_own_body(body: bytes, t: int) -> None:
    header = signature_header("s" * 20, body, timestamp=t)
    assert verify("s" * 20, header, body, now=t)
    assert not verify("s" * 20, header, body + b"x", now=t)


@settings(max_examples=150)
@given(
    st.dictionaries(
        st.sampled_from(["event_id", "type", "occurred_at", "delivery", "customer", "driver", "data"]), JSON, max_size=7
    )
)
def test_event_validation_answers_with_field_errors_never_crashes(payload: dict[str, Any]) -> None:
    try:
        parse_event(payload, "DE")
    except EventInvalid as e:
        assert e.fields and all(isinstance(v, str) for v in e.fields.values())
