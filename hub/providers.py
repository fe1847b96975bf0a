"""The provider clients built from the settings, in one place: the worker's channels, and the
Twilio client the API uses to relay texts between a driver and a customer."""

from __future__ import annotations

from channels.base import Channel
from channels.email import SmtpEmail
from channels.push import FcmPush
from channels.sms import TwilioSms
from channels.whatsapp import TwilioWhatsApp

from .config import Settings

__all__ = ["build_channels", "sender_id", "sms_client"]


def sms_client(settings: Settings, *, status_callback: str | None) -> TwilioSms:
    """A Twilio client; ``status_callback`` is where Twilio reports delivery (None: nowhere)."""
    tw = settings.twilio
    return TwilioSms(
        account_sid=tw.account_sid,
        auth_token=tw.auth_token,
        from_number=tw.from_number,
        messaging_service_sid=tw.messaging_service_sid,
        status_callback=status_callback,
        base_url=tw.base_url,
        timeout=tw.timeout,
    )


def build_channels(settings: Settings) -> dict[str, Channel]:
    """The worker's four channel clients, configured from the settings (WhatsApp's refuses every
    send while whatsapp.from_number is unset; the planner does not choose it then)."""
    smtp, fcm, tw = settings.smtp, settings.fcm, settings.twilio
    status_callback = f"{settings.public_url.rstrip('/')}/webhooks/twilio/status"
    return {
        "sms": sms_client(settings, status_callback=status_callback),
        "email": SmtpEmail(
            host=smtp.host,
            port=smtp.port,
            sender=smtp.from_address,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.use_tls,
            start_tls=smtp.start_tls,
            timeout=smtp.timeout,
            pool_size=smtp.pool_size,
        ),
        "push": FcmPush(
            project_id=fcm.project_id,
            base_url=fcm.base_url,
            credentials_file=fcm.credentials_file,
            timeout=fcm.timeout,
            max_concurrency=fcm.max_concurrency,
        ),
        "whatsapp": TwilioWhatsApp(
            account_sid=tw.account_sid,
            auth_token=tw.auth_token,
            from_number=settings.whatsapp.from_number,
            status_callback=status_callback,
            base_url=tw.base_url,
            timeout=tw.timeout,
        ),
    }


def sender_id(settings: Settings, channel: str) -> str:
    """The provider sender a channel's messages go out from (their shared pace is per sender)."""
    if channel == "sms":
        tw = settings.twilio
        return tw.messaging_service_sid or tw.from_number or "default"
    if channel == "whatsapp":
        return settings.whatsapp.from_number or "default"
    if channel == "email":
        return settings.smtp.username or settings.smtp.from_address
    return settings.fcm.project_id
