"""Twilio error codes the hub acts on, apart from the client library, so code that only reads
a status report (the API's callback handler) does not load twilio."""

from __future__ import annotations

__all__ = ["INVALID_NUMBER_ERRORS", "PERMANENT_SMS_ERRORS"]

# Twilio error codes that retrying cannot fix; the first group means the number itself is bad.
INVALID_NUMBER_ERRORS = frozenset(
    {"21211", "21214", "21217", "21407", "21421", "21612", "21614", "30003", "30005", "30006"}
)
PERMANENT_SMS_ERRORS = INVALID_NUMBER_ERRORS | {"21408", "21606", "21610", "30004", "30007", "21602", "21604"}
