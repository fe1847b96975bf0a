"""The app's answer to a ``scheduled`` question, tapped on a push action.

    POST   /v1/push/answers                one of the push's actions (no API key: its receipt)

A push for ``scheduled`` carries its answers as actions in its data (``actions``: a JSON list of
``{"id", "title"}``, ids ``confirm``, ``neighbour``, ``safe_place``; ``answer_url``: this
endpoint; hub.prompts.push_actions). The app posts back the push's ``message_id`` and
``receipt`` (the token it already posts to /v1/push/receipts, which only the push's data holds)
with the action's id, or ``slot:<id>`` for an offered time. The answer has the effect and the
webhook of the same numbered SMS answer (hub.conversation), with ``channel: "push"``. The same
answer posted again is the same webhook (keyed by message and answer), never a second one.

Answers: 403 a receipt that does not match the message, 404 no such push, 409 ``not_a_question``
(the push was about another milestone) or ``question_closed`` (the delivery moved on, or its
window started), 410 the customer was erased, 422 an answer the question does not offer.
"""

from __future__ import annotations

import time

from aiohttp import web
from pydantic import BaseModel, Field

from .api_messages import read_push
from .appkeys import CONVERSATIONS, CUSTOMERS, SETTINGS, STORE
from .errors import ApiError
from .params import json_response
from .policy import customer_timezone
from .prompts import answer_number, stored_question
from .schema import PushReceipt

__all__ = ["PushAnswer", "PushAnswerResult", "add_routes"]


class PushAnswer(PushReceipt):
    """A push action tapped in the app: the push's ``message_id`` and ``receipt``, and the answer."""

    answer: str = Field(
        min_length=1, max_length=140, description="confirm, neighbour, safe_place, or slot:<id> for an offered time"
    )


class PushAnswerResult(BaseModel):
    understood_as: str = Field(description="confirm, instructions or reschedule")
    text: str = Field(description="what the hub answers, in the customer's language (for the app to show)")


async def push_answer(request: web.Request) -> web.Response:
    asked, message = await read_push(request, PushAnswer, "answer")
    if message.get("milestone") != "scheduled":
        raise ApiError(409, "not_a_question", "this push asked no question")
    customer = await request.app[CUSTOMERS].get(message.get("customer_id") or "")
    if customer is None or customer.erased:
        raise ApiError(410, "gone", "the customer was erased")
    delivery = await request.app[STORE].get_delivery(message.get("delivery_id") or "")
    settings = request.app[SETTINGS]
    prefs = customer.prefs
    locale = prefs.get("locale") or message.get("locale") or customer.locale or settings.default_locale
    tz = customer_timezone(prefs, customer.timezone, customer.phone, settings.policy, settings.default_timezone)
    question = stored_question(delivery, locale, tz, time.time()) if delivery else None
    if question is None:
        raise ApiError(409, "question_closed", "the question has closed: the delivery is being planned")
    number = answer_number(question, asked.answer)
    if number is None:
        raise ApiError(422, "validation_failed", "not an answer to this question", {"answer": "not offered"})
    key = f"push:{asked.message_id}:{asked.answer}"
    answer = await request.app[CONVERSATIONS].answer_question(customer, question, number, locale, key, "push")
    return json_response({"understood_as": answer.intent, "text": answer.text})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/push/answers", push_answer)
