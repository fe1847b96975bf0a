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


def test_every_public_route_of_the_app_is_in_the_document() -> None:
    """The document cannot drift from the router: a route added without documenting it fails."""
    from hub.api import create_app
    from hub.openapi import openapi_document
    from tests.conftest import make_settings

    app = create_app(make_settings("redis://127.0.0.1:1/0", 8080, 8081, 2525))
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None
        and route.method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        and not route.resource.canonical.startswith(("/static", "/sandbox"))
    }
    documented = {(method, path) for path, item in openapi_document()["paths"].items() for method in item}
    assert served - documented == set()


async def test_the_reference_page_lists_every_operation_and_needs_nothing_from_elsewhere(hub: Hub) -> None:
    resp = await hub.request("GET", "/docs", key=None)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
    page = await resp.text()
    doc = await (await hub.request("GET", "/openapi.json", key=None)).json()
    for path, item in doc["paths"].items():
        for method in item:
            if method in ("get", "post", "put", "patch", "delete"):
                assert f"{method.upper()} {path}" in page.replace("&#x27;", "'")
    assert 'id="schema-event"' in page and "<script" not in page
    assert "http://" not in page.replace(hub.base, "") and "https://" not in page
