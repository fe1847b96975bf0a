"""Channel adapters: one per channel, all with ``async send(Outbound) -> SendResult``.

The shared types and segment counting load with the package; each adapter loads its provider
library (twilio, aiosmtplib, firebase-admin) only when first named, so code that only speaks of
messages (the HTTP API, the CLI) never pays for the send path.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Channel, InDoubtPolicy, Outbound, SendResult
from .segments import SegmentInfo, count_segments

if TYPE_CHECKING:
    from .email import SmtpEmail, build_email
    from .push import FcmPush
    from .sms import TwilioSms

__all__ = [
    "Channel",
    "FcmPush",
    "InDoubtPolicy",
    "Outbound",
    "SegmentInfo",
    "SendResult",
    "SmtpEmail",
    "TwilioSms",
    "build_email",
    "count_segments",
]

_ADAPTERS = {"SmtpEmail": "email", "build_email": "email", "FcmPush": "push", "TwilioSms": "sms"}


def __getattr__(name: str) -> object:
    if name not in _ADAPTERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_ADAPTERS[name]}", __name__), name)
