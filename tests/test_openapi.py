"""The served OpenAPI document is valid and built from the validating models."""

from __future__ import annotations

from openapi_spec_validator import validate

from tests.conftest import Hub


async def test_openapi_document_is_valid_and_describes_the_event_schema(hub: Hub) -> None:
    resp = await hub.request("GET", "/openapi.json", key=None)
    assert resp.status == 200
    doc = await resp.json()
    validate(doc)
    event = doc["components"]["schemas"]["Event"]
    assert set(event["required"]) == {"event_id", "type", "occurred_at", "delivery", "customer"}
    assert "out_for_delivery" in event["properties"]["type"]["enum"]
    assert {"/v1/events", "/v1/events/batch", "/v1/customers/{id}", "/v1/messages"} <= set(doc["paths"])
