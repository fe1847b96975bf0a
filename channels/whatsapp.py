"""WhatsApp through Twilio's Messages API, with the same twilio client as SMS.

A WhatsApp message is an SMS-shaped Twilio message whose ``From`` and ``To`` carry the
``whatsapp:`` prefix. ``TwilioWhatsApp`` is ``TwilioSms`` with those addresses, and with one
choice the SMS adapter does not have: an ``Outbound`` with a ``content_sid`` goes out as that
approved Content template (``content_sid`` + ``content_variables``), one without as free-form
text (``body``). Which of the two a message may be is WhatsApp's 24-hour rule, decided before the
adapter by ``hub.whatsapp``: the adapter sends what it is given.

Errors and lost answers are classified as for SMS. A lost answer is reconciled the same way
(Twilio's message list for the number, from the hub's WhatsApp sender, created since the send):
a message is recognized by its body: the free-form text, or a text containing the letters and
digits of every template variable (Twilio lists a template message with the text it filled in),
whichever of the two the lost send was. So the variables should tell the hub's messages apart,
as the rendered text (``text``, one of the default variables) does.
A refusal never marks the number invalid: a number that is not on WhatsApp may still take SMS.
"""

from __future__ import annotations

import json
from dataclasses import replace

from .base import Outbound, SendResult
from .sms import TWILIO_ORIGIN, TwilioSms, skeleton

__all__ = ["PREFIX", "TwilioWhatsApp", "address"]

PREFIX = "whatsapp:"


def address(e164: str) -> str:
    """The Twilio address of a WhatsApp number."""
    return e164 if e164.startswith(PREFIX) else PREFIX + e164


class TwilioWhatsApp(TwilioSms):
    name = "whatsapp"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str | None,
        status_callback: str | None,
        base_url: str = TWILIO_ORIGIN,
        timeout: float = 10.0,
    ) -> None:
        self._configured = bool(from_number)  # without a sender every send is refused
        super().__init__(
            account_sid=account_sid,
            auth_token=auth_token,
            from_number=address(from_number or ""),
            messaging_service_sid=None,
            status_callback=status_callback,
            base_url=base_url,
            timeout=timeout,
        )

    async def send(self, message: Outbound) -> SendResult:
        if not self._configured:
            return SendResult.permanent("no WhatsApp sender is configured (whatsapp.from_number)")
        kwargs: dict[str, object] = {"to": address(message.to), "from_": self._from}
        if message.content_sid:
            kwargs["content_sid"] = message.content_sid
            kwargs["content_variables"] = message.content_variables or "{}"
        else:
            kwargs["body"] = message.text
        if self._status_callback:
            kwargs["status_callback"] = self._status_callback
        result = await self._create(kwargs)
        return replace(result, contact_invalid=False)

    async def reconcile(self, message: Outbound, since: float) -> SendResult:
        return await super().reconcile(replace(message, to=address(message.to), sender=None), since)

    def _same_text(self, body: str, message: Outbound) -> bool:
        """The message's free-form text, or a template filled with its variables."""
        if super()._same_text(body, message):
            return True
        values = [skeleton(str(v)) for v in json.loads(message.content_variables or "{}").values()]
        listed = skeleton(body)
        return any(values) and all(v in listed for v in values)
