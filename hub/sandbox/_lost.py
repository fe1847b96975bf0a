"""Losing the answer to an HTTP request, for the lost-answer fault modes (see ``faults``)."""

from __future__ import annotations

from aiohttp import web

from .faults import FaultMode, Faults

__all__ = ["drop_connection", "lose_answer"]


def drop_connection(request: web.Request) -> web.Response:
    """Close the request's connection at once: the client gets no answer at all. The returned
    response is never written (aiohttp needs one from the handler)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=204)


async def lose_answer(request: web.Request, mode: FaultMode, faults: Faults, answer: web.Response) -> web.Response:
    """What becomes of ``answer`` under an ``accept-`` mode: held for the fault's timeout, then
    sent (``"accept-stall"``), or never sent, the connection closed (``"accept-drop"``)."""
    if mode == "accept-stall":
        await faults.stall()
        return answer
    return drop_connection(request)
