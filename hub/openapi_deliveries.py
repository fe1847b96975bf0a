"""The OpenAPI document's paths about a delivery on its way: the driver's position, when the
customer is home, and a push action answering a scheduled question (hub.openapi_api adds them)."""

from __future__ import annotations

from typing import Any

from .openapi_parts import error_answers, json_answer, json_body

__all__ = ["answer_paths", "availability_paths", "location_paths"]


def answer_paths() -> dict[str, Any]:
    """The app's answer to a scheduled question, tapped on a push action (hub.api_answers)."""
    return {
        "/v1/push/answers": {
            "post": {
                "summary": "A push action answering a scheduled question (no API key: the receipt from the push's"
                " data); the same effect and webhook as the numbered SMS answer",
                "operationId": "pushAnswer",
                "security": [],
                "requestBody": json_body("PushAnswer"),
                "responses": {
                    "200": json_answer("PushAnswerResult", "the answer taken"),
                    "409": json_answer("Error", "not_a_question or question_closed"),
                    "410": json_answer("Error", "the customer was erased"),
                    **error_answers(400, 403, 404, 415, 422),
                },
            }
        },
    }


def location_paths(id_param: dict[str, Any]) -> dict[str, Any]:
    """The driver app's position reports (hub.api_location)."""
    return {
        "/v1/deliveries/{id}/location": {
            "parameters": [id_param],
            "post": {
                "summary": "The driver app's latest position (events scope); only while out for delivery, kept"
                " tracking.map_position_minutes, shown only on the customer's tracking page",
                "operationId": "postLocation",
                "requestBody": json_body("LocationReport"),
                "responses": {
                    "200": json_answer("LocationAnswer", "stored, or ignored (an older or expired position)"),
                    "409": json_answer(
                        "Error", "not_out_for_delivery (the delivery is not on the road) or customer_erased"
                    ),
                    **error_answers(400, 401, 403, 404, 415, 422),
                },
            },
        },
    }


def availability_paths(id_param: dict[str, Any]) -> dict[str, Any]:
    """When customers are home (hub.api_availability)."""
    return {
        "/v1/customers/{id}/availability": {
            "parameters": [id_param],
            "get": {
                "summary": "When the customer is home: p_home and evidence per weekday and time block (read scope)",
                "operationId": "getCustomerAvailability",
                "responses": {
                    "200": json_answer(
                        "CustomerAvailability", "the customer's week; an unknown customer gets the prior"
                    ),
                    **error_answers(400, 401, 403),
                },
            },
        },
        "/v1/availability/query": {
            "post": {
                "summary": "p_home for many customers x candidate windows at once (read scope; 500 x 50 at most)",
                "operationId": "queryAvailability",
                "requestBody": json_body("AvailabilityQuery"),
                "responses": {
                    "200": json_answer("AvailabilityAnswer", "per customer and window, in the order asked"),
                    **error_answers(400, 401, 403, 413, 415, 422),
                },
            },
        },
    }
