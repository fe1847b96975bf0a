"""Injectable provider failures for chaos tests.

``faults.set(provider, mode, count=None)`` makes the next ``count`` requests to ``provider``
fail (every request while ``count`` is ``None``), then the provider is healthy again.

Providers: ``"twilio"``, ``"fcm"``, ``"smtp"``. Modes:

``None``       healthy (same as ``clear(provider)``)
``"500"``      HTTP 500 (Twilio 20500, FCM INTERNAL); SMTP ``451 4.3.0`` at MAIL
``"503"``      HTTP 503 (Twilio 20503, FCM UNAVAILABLE); SMTP ``451 4.3.2`` at MAIL
``"429"``      HTTP 429 with ``Retry-After: 1`` (Twilio 20429, FCM RESOURCE_EXHAUSTED /
               QUOTA_EXCEEDED); SMTP ``451 4.7.1`` at MAIL
``"timeout"``  hold the request for ``timeout_seconds`` (default 30 s), then HTTP 504 / SMTP
               ``451 4.4.2``; released at once when the sandbox closes or its app shuts down
``"refuse"``   HTTP 503; SMTP ``421`` greeting on a new connection (``421`` reply to MAIL on an
               open one), after which the server closes the connection

Lost answers, for creating a message (Twilio Messages create, FCM send, SMTP DATA):

``"accept-stall"``  the message is accepted and recorded, then the answer is held for
                    ``timeout_seconds`` (released like ``"timeout"``) before it is sent: a
                    client with a shorter timeout never sees it
``"accept-drop"``   the message is accepted and recorded, then the connection is closed
                    without an answer
``"drop"``          the connection is closed without an answer and nothing is recorded (SMTP:
                    after the message data, instead of the final reply)

A request failed by any other mode is not recorded in the ledger. For SMTP a fault is consumed
per MAIL transaction, except ``"refuse"``, which is also consumed by a new connection, and the
three lost-answer modes, which are consumed at the end of DATA. Reads (Twilio's fetch and list)
consume every mode but the two ``accept-`` ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = ["ACCEPTING", "LOST_ANSWER", "MODES", "PROVIDERS", "FaultMode", "FaultSetting", "Faults", "Provider"]

logger = logging.getLogger(__name__)

Provider = Literal["twilio", "fcm", "smtp"]
FaultMode = Literal["500", "503", "429", "timeout", "refuse", "accept-stall", "accept-drop", "drop"]
PROVIDERS: tuple[Provider, ...] = get_args(Provider)
MODES: tuple[FaultMode, ...] = get_args(FaultMode)
# The modes that lose the answer to a request that created a message (see the module docstring).
ACCEPTING: tuple[FaultMode, ...] = ("accept-stall", "accept-drop")
LOST_ANSWER: tuple[FaultMode, ...] = (*ACCEPTING, "drop")


@dataclass
class FaultSetting:
    mode: FaultMode
    remaining: int | None  # None: until cleared


class Faults:
    """Per-provider failure settings, consulted by the fakes on every request."""

    def __init__(self, *, timeout_seconds: float = 30.0) -> None:
        self.timeout_seconds = timeout_seconds
        self._settings: dict[Provider, FaultSetting] = {}
        self._triggered: dict[Provider, int] = dict.fromkeys(PROVIDERS, 0)
        self._release = asyncio.Event()
        self._closed = False

    @staticmethod
    def _provider(provider: str) -> Provider:
        for known in PROVIDERS:
            if provider == known:
                return known
        raise ValueError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")

    def set(self, provider: str, mode: str | int | None, count: int | None = None) -> None:
        """Fail the next ``count`` requests to ``provider`` with ``mode`` (all of them if ``None``)."""
        name = self._provider(provider)
        if mode is None:
            self._settings.pop(name, None)
            logger.info("fault cleared: %s", name)
            return
        wanted = str(mode)
        chosen = next((m for m in MODES if m == wanted), None)
        if chosen is None:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {', '.join(MODES)} or None")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
            raise ValueError(f"count must be a non-negative integer or None, not {count!r}")
        if count == 0:
            self._settings.pop(name, None)
            return
        self._settings[name] = FaultSetting(chosen, count)
        logger.info("fault set: %s -> %s (count=%s)", name, chosen, count)

    def get(self, provider: str) -> FaultSetting | None:
        setting = self._settings.get(self._provider(provider))
        return None if setting is None else FaultSetting(setting.mode, setting.remaining)

    def clear(self, provider: str | None = None) -> None:
        """Make one provider (or all of them) healthy again."""
        if provider is None:
            self._settings.clear()
        else:
            self._settings.pop(self._provider(provider), None)

    def triggered(self, provider: str) -> int:
        """How many requests to ``provider`` a fault has failed so far."""
        return self._triggered[self._provider(provider)]

    def take(self, provider: str, modes: Collection[str] | None = None) -> FaultMode | None:
        """Consume one failure for ``provider``; return its mode, or ``None`` if healthy.

        With ``modes``, only a setting whose mode is among them is consumed.
        """
        name = self._provider(provider)
        setting = self._settings.get(name)
        if setting is None or (modes is not None and setting.mode not in modes):
            return None
        if setting.remaining is not None:
            setting.remaining -= 1
            if setting.remaining <= 0:
                del self._settings[name]
        self._triggered[name] += 1
        logger.info("fault triggered: %s -> %s", name, setting.mode)
        return setting.mode

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """JSON-ready view: ``{provider: {"mode", "remaining", "triggered"}}``."""
        result: dict[str, dict[str, Any]] = {}
        for name in PROVIDERS:
            setting = self._settings.get(name)
            result[name] = {
                "mode": setting.mode if setting else None,
                "remaining": setting.remaining if setting else None,
                "triggered": self._triggered[name],
            }
        return result

    async def stall(self) -> None:
        """Hold a request (or its answer) for ``timeout_seconds``; return early on ``release()``
        or ``close()``."""
        if self._closed:
            return
        event = self._release
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.timeout_seconds)

    def release(self) -> None:
        """Let every request (or answer) currently held by a ``"timeout"`` or ``"accept-stall"``
        fault go."""
        event, self._release = self._release, asyncio.Event()
        event.set()

    def close(self) -> None:
        """Release held requests and make future ``"timeout"`` faults answer at once."""
        self._closed = True
        self.release()
