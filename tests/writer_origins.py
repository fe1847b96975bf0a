"""An opt-in pytest plugin that names where a leaked asyncio stream was opened.

A ``StreamWriter`` dropped without ``close()`` warns only when the garbage collector reaches it,
often in a later test, and its warning carries no allocation traceback (``StreamWriter.__del__``
passes no ``source``, so even ``PYTHONTRACEMALLOC`` cannot help). With this plugin every writer
remembers the stack that made it and the test running then; the collector runs after each
test's call and teardown, so a leak is reported at the test that made it. Each unclosed writer
is appended to ``$WRITER_ORIGINS_OUT`` (default: standard error):

    python -m pytest -p tests.writer_origins tests/test_track.py

Only for hunting leaks: it slows every test by a full collection.
"""

from __future__ import annotations

import asyncio.streams
import gc
import os
import sys
import traceback
from collections.abc import Generator
from typing import Any

import pytest

_running = ["(outside a test)"]
_init = asyncio.streams.StreamWriter.__init__
_del = asyncio.streams.StreamWriter.__del__


def _init_recording(self: asyncio.StreamWriter, *args: Any, **kwargs: Any) -> None:
    _init(self, *args, **kwargs)
    self._origin = (_running[0], "".join(traceback.format_stack(limit=30)[:-1]))  # type: ignore[attr-defined]


def _del_reporting(self: asyncio.StreamWriter) -> None:
    if not self.transport.is_closing():
        made_in, stack = getattr(self, "_origin", ("?", "(made before the plugin loaded)\n"))
        report = f"=== unclosed StreamWriter made in {made_in}, collected in {_running[0]}\n{stack}\n"
        out = os.environ.get("WRITER_ORIGINS_OUT")
        if out:
            with open(out, "a", encoding="utf-8") as f:
                f.write(report)
        else:
            sys.stderr.write(report)
    _del(self)


asyncio.streams.StreamWriter.__init__ = _init_recording  # type: ignore[method-assign]
asyncio.streams.StreamWriter.__del__ = _del_reporting  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    _running[0] = f"{item.nodeid} (setup)"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    _running[0] = f"{item.nodeid} (call)"
    try:
        return (yield)
    finally:
        gc.collect()  # the test's loop still runs: a leak here warns as "unclosed", naming it


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    _running[0] = f"{item.nodeid} (teardown)"
    try:
        return (yield)
    finally:
        gc.collect()
