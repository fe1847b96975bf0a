"""Channel adapters: one per channel, all with ``async send(Outbound) -> SendResult``."""

from __future__ import annotations

from .base import Channel, InDoubtPolicy, Outbound, SendResult
from .email import SmtpEmail, build_email
from .push import FcmPush
from .segments import SegmentInfo, count_segments
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
