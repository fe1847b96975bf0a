"""Delivery notification hub: milestone events in, customer messages out.

Public entry points: ``create_app`` (the HTTP API), ``create_worker`` (the arq worker),
``load_settings``. Modules: config, schema, api, worker, pipeline, planner, render, context,
store, keys, links, masking, redis_server, sandbox, demo, dev, cli (benchmarks and chaos runs: the
top-level ``proofs`` package, not shipped).
"""

from __future__ import annotations

from .config import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "create_app", "create_worker", "load_settings"]


def __getattr__(name: str) -> object:
    # Imported lazily so `import hub.config` stays light (the CLI loads settings first).
    if name == "create_app":
        from .api import create_app

        return create_app
    if name == "create_worker":
        from .worker import create_worker

        return create_worker
    raise AttributeError(name)
