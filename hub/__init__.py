"""Delivery notification hub: milestone events in, customer messages out.

Public entry points: ``create_app`` (the HTTP API, ``hub.api``), ``create_worker`` (the arq
worker, ``hub.worker``), ``load_settings``, ``Settings`` and ``ConfigError`` (``hub.config``).
docs/architecture.md names every module and the layer it belongs to (a test keeps that list
complete). Benchmarks and chaos runs are the top-level ``proofs`` package, not shipped.

Nothing is imported here: importing one module of the package (``hub.vocabulary`` from
``preferences``, ``hub.config`` from the CLI) loads that module and what it needs, no more.
"""

from __future__ import annotations

import importlib

__all__ = ["ConfigError", "Settings", "create_app", "create_worker", "load_settings"]

_HOME = {
    "ConfigError": "config",
    "Settings": "config",
    "load_settings": "config",
    "create_app": "api",
    "create_worker": "worker",
}


def __getattr__(name: str) -> object:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
