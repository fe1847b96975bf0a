"""The upstream adapters' settings and the vendors' status tables (docs/integrations.md).

Kept beside ``hub.adapters_map``, which reads them: the tables say which vendor status is which
milestone, and a deployer's entries are merged over them rather than replacing them.
"""

# Mutable defaults are safe here: pydantic copies them per instance. ruff knows that only of
# classes it sees derive from BaseModel in the same file, and Section comes from config_sections.
# ruff: noqa: RUF012

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from .config_sections import Section
from .vocabulary import Milestone, ReasonCode

__all__ = [
    "AFTERSHIP_EXCEPTION_KINDS",
    "AFTERSHIP_REASON_CODES",
    "AFTERSHIP_SUBTAGS",
    "AFTERSHIP_TAGS",
    "ONFLEET_REASON_CODES",
    "ONFLEET_TRIGGERS",
    "AdapterSettings",
    "AfterShipSettings",
    "GenericField",
    "GenericMapping",
    "OnfleetSettings",
]


def _merged_table(default: Mapping[str, str | None], given: Any) -> Any:
    """A vendor status table as configured: the given entries over the defaults, keys compared
    without case (environment overrides arrive lower-cased); null ignores a status."""
    if not isinstance(given, Mapping):
        return given
    table = {key.lower(): value for key, value in default.items()}
    table.update({str(key).lower(): value for key, value in given.items()})
    return table


ONFLEET_TRIGGERS: dict[str, Milestone | None] = {
    "taskcreated": "order_confirmed",
    "taskstarted": "out_for_delivery",
    "tasketa": "arriving_soon",
    "taskarrival": "arriving_soon",
    "taskcompleted": "delivered",
    "taskfailed": "delivery_failed",
    "taskdelayed": "exception",
    "taskupdated": "eta_changed",
}
AFTERSHIP_TAGS: dict[str, Milestone | None] = {
    "inforeceived": "shipped",
    "intransit": "in_transit",
    "outfordelivery": "out_for_delivery",
    "attemptfail": "delivery_failed",
    "delivered": "delivered",
    "availableforpickup": "ready_for_pickup",
    "exception": "exception",
    "expired": None,
}
AFTERSHIP_SUBTAGS: dict[str, Milestone | None] = {"exception_011": "returned"}
AFTERSHIP_EXCEPTION_KINDS: dict[str, str | None] = {
    "exception_004": "delay",
    "exception_005": "delay",
    "exception_007": "address",
    "exception_012": "damage",
}
# The vendors' failure codes -> the hub's reason codes (hub.vocabulary.REASON_CODES), whose
# wording every language translates; a code not listed keeps the vendor's text as the reason.
ONFLEET_REASON_CODES: dict[str, ReasonCode | None] = {
    "nobody": "nobody_home",
    "closed": "business_closed",
    "refused": "refused",
    "unable_to_locate": "address_problem",
    "damaged": "damaged",
}
AFTERSHIP_REASON_CODES: dict[str, ReasonCode | None] = {
    "attemptfail_002": "nobody_home",
    "attemptfail_003": "business_closed",
    "exception_002": "address_problem",
    "exception_003": "refused",
    "exception_004": "customs",
    "exception_005": "delayed",
    "exception_006": "payment_due",
    "exception_007": "address_problem",
    "exception_012": "damaged",
    "exception_013": "lost",
    "exception_016": "delayed",
    "exception_017": "weather",
}
GenericField = Literal[
    "event_id",
    "type",
    "occurred_at",
    "delivery.id",
    "delivery.tracking_code",
    "delivery.merchant",
    "delivery.address",
    "delivery.eta.start",
    "delivery.eta.end",
    "customer.id",
    "customer.name",
    "customer.phone",
    "customer.email",
    "customer.locale",
    "customer.timezone",
    "driver.id",
    "driver.name",
    "driver.phone",
    "data.reason",
    "data.kind",
    "data.minutes",
    "data.pod.photo_url",
    "data.pod.signature",
    "data.pod.recipient",
    "data.pod.place",
]


class OnfleetSettings(Section):
    secret: str | None = None
    """Onfleet's webhook secret (hex, as the dashboard shows it); secret, set it through
    HUB_ADAPTERS__ONFLEET__SECRET. Unset: POST/GET /webhooks/onfleet answer 404."""
    triggers: dict[str, Milestone | None] = ONFLEET_TRIGGERS
    """Onfleet trigger name -> milestone (null: acknowledged and ignored); entries given are
    merged over the defaults (docs/integrations.md), names compared without case."""
    delivery_id_metadata: str | None = None
    """Name of the task metadata field that holds the hub's delivery id (unset: the task id)."""
    merchant: str | None = None
    """Merchant name shown in messages for Onfleet tasks (unset: none)."""
    photo_url: str = Field("https://d15p8tr8p0vffz.cloudfront.net/{id}/800x.png", pattern=r"^https?://.*\{id\}")
    """Where a proof-of-delivery photo is seen, from its upload id ({id})."""
    reason_codes: dict[str, ReasonCode | None] = ONFLEET_REASON_CODES
    """A failed task's `failureReason` -> the hub's reason code (docs/integrations.md), merged
    over the defaults; a value not listed keeps Onfleet's wording and the driver's notes."""

    @field_validator("triggers", mode="before")
    @classmethod
    def _triggers(cls, value: Any) -> Any:
        return _merged_table(ONFLEET_TRIGGERS, value)

    @field_validator("reason_codes", mode="before")
    @classmethod
    def _reason_codes(cls, value: Any) -> Any:
        return _merged_table(ONFLEET_REASON_CODES, value)


class AfterShipSettings(Section):
    secret: str | None = None
    """AfterShip's webhook secret; secret, set it through HUB_ADAPTERS__AFTERSHIP__SECRET.
    Unset: POST /webhooks/aftership answers 404."""
    tags: dict[str, Milestone | None] = AFTERSHIP_TAGS
    """AfterShip delivery status (tag) -> milestone (null: acknowledged and ignored); merged over
    the defaults (docs/integrations.md), compared without case."""
    subtags: dict[str, Milestone | None] = AFTERSHIP_SUBTAGS
    """Sub-status (e.g. Exception_011, returned to sender) -> milestone, before the tag's entry
    (defaults: docs/integrations.md)."""
    exception_kinds: dict[str, str | None] = AFTERSHIP_EXCEPTION_KINDS
    """Sub-status -> the `exception` event's data.kind: delay, damage, address (defaults:
    docs/integrations.md)."""
    delivery_id: Literal["tracking_number", "order_id", "id"] = "tracking_number"
    """Which tracking field is the hub's delivery id (order_id falls back to the tracking number)."""
    reason_codes: dict[str, ReasonCode | None] = AFTERSHIP_REASON_CODES
    """Sub-status -> the hub's reason code (docs/integrations.md), merged over the defaults; a
    sub-status not listed keeps its message as the reason."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _merged_table(AFTERSHIP_TAGS, value)

    @field_validator("subtags", mode="before")
    @classmethod
    def _subtags(cls, value: Any) -> Any:
        return _merged_table(AFTERSHIP_SUBTAGS, value)

    @field_validator("exception_kinds", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        return _merged_table(AFTERSHIP_EXCEPTION_KINDS, value)

    @field_validator("reason_codes", mode="before")
    @classmethod
    def _reason_codes(cls, value: Any) -> Any:
        return _merged_table(AFTERSHIP_REASON_CODES, value)


class GenericMapping(Section):
    secret: str | None = None
    """Signing secret; secret, set it through HUB_ADAPTERS__GENERIC__<NAME>__SECRET. Unset: disabled."""
    signature_header: str = Field("X-Signature", min_length=1)
    """Header carrying the signature."""
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    """HMAC hash function over the raw body."""
    encoding: Literal["hex", "base64"] = "hex"
    """How the signature is written in the header."""
    signature_prefix: str = ""
    """Text before the signature in the header, e.g. `sha256=`."""
    secret_encoding: Literal["text", "hex", "base64"] = "text"
    """How the secret is written (the HMAC key is its bytes)."""
    fields: dict[GenericField, str]
    """Event field -> JSON pointer (RFC 6901) into the payload; delivery.id and type are required."""
    statuses: dict[str, Milestone | None] = {}
    """The `type` pointer's value -> milestone (null: ignored). A value that is already a milestone
    name needs no entry; anything else unlisted is acknowledged and ignored."""

    @field_validator("fields")
    @classmethod
    def _pointers(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [f for f in ("delivery.id", "type") if f not in value]
        if missing:
            raise ValueError(f"{', '.join(missing)} must be mapped")
        bad = [f for f, pointer in value.items() if pointer and not pointer.startswith("/")]
        if bad:
            raise ValueError(f"not a JSON pointer (starts with /): {', '.join(bad)}")
        return value

    @field_validator("statuses", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        return _merged_table({}, value)


class AdapterSettings(Section):
    """Upstream adapters (docs/integrations.md): vendors' webhooks mapped onto milestones."""

    onfleet: OnfleetSettings = OnfleetSettings()
    aftership: AfterShipSettings = AfterShipSettings()
    generic: dict[str, GenericMapping] = {}
    """Named mappings for other JSON webhooks, each served at POST /webhooks/generic/{name}."""

    @field_validator("generic")
    @classmethod
    def _names(cls, value: dict[str, GenericMapping]) -> dict[str, GenericMapping]:
        bad = [name for name in value if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name)]
        if bad:
            raise ValueError(f"mapping names are 1-40 lower-case letters, digits, _ or -: {', '.join(bad)}")
        return value
