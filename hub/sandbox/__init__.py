"""Sandbox provider fakes: Twilio Messaging, FCM HTTP v1 and an SMTP sink.

The real client libraries (twilio-python's async client, firebase-admin's
``messaging.send_each_async``, aiosmtplib) talk to these fakes unchanged once pointed at them.
Everything the fakes accept lands in one ``Ledger``; ``Faults`` injects provider failures;
``TwilioWebhooks`` posts what Twilio would post to the hub (status callbacks, texts and calls
from simulated phones). See ``hub.sandbox.core`` for the routes.
"""

from __future__ import annotations

from .core import Sandbox
from .faults import ACCEPTING, LOST_ANSWER, MODES, PROVIDERS, FaultMode, Faults, FaultSetting, Provider
from .fcm_fake import FcmFake
from .ledger import CHANNELS, Channel, Ledger, LedgerEntry
from .smtp_sink import SmtpSink
from .twilio_fake import TwilioFake
from .twilio_webhooks import TwilioWebhooks

__all__ = [
    "ACCEPTING",
    "CHANNELS",
    "LOST_ANSWER",
    "MODES",
    "PROVIDERS",
    "Channel",
    "FaultMode",
    "FaultSetting",
    "Faults",
    "FcmFake",
    "Ledger",
    "LedgerEntry",
    "Provider",
    "Sandbox",
    "SmtpSink",
    "TwilioFake",
    "TwilioWebhooks",
]
