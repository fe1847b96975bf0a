"""Upstream adapters: vendors' webhook payloads mapped onto the hub's milestones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from .schema import Event

__all__ = ["AdapterDeps", "add_adapter_routes"]


@dataclass(frozen=True)
class AdapterDeps:
    """What the adapters need from the API: ``accept(app, source, events)`` registers and
    queues validated events (one status per event: accepted, duplicate or conflict)."""

    accept: Callable[[web.Application, str, list[Event]], Awaitable[list[str]]]


def add_adapter_routes(app: web.Application, deps: AdapterDeps) -> None:
    """Register the adapters' webhook routes."""
