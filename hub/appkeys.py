"""The application keys of the HTTP app: every piece of shared state a route module reads.

One module holds them all so that each route module (``hub.api_*``, ``hub.track``,
``hub.adapters``, ``hub.twilio_hooks``, ``hub.apidocs``, ``hub.console``) is a set of
module-level handlers reading ``request.app[KEY]``, and ``hub.api.create_app`` is the one place
that fills them. The types are the clients' own or plain library types, so this module imports
nothing that imports it back.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web
from redis.asyncio import Redis

from preferences import CustomerStore

from .apikeys import KeyRing
from .config import Settings
from .conversation import Conversations
from .links import Links
from .merchants import Merchants
from .relay import Relay
from .store import HubStore
from .webhooks import Webhooks

if TYPE_CHECKING:
    from channels.sms import TwilioSms

__all__ = [
    "CONSOLE_DEMO",
    "CONSOLE_TEMPLATES",
    "CONVERSATIONS",
    "CUSTOMERS",
    "DASHBOARD_CLOCK",
    "DASHBOARD_CSRF_KEY",
    "DASHBOARD_TEMPLATES",
    "KEYRING",
    "LINKS",
    "MERCHANTS",
    "REDIS",
    "RELAY",
    "SETTINGS",
    "SMS",
    "STOPPING",
    "STORE",
    "TRACK_CSRF_KEY",
    "TRACK_LANGUAGES",
    "TRACK_STRINGS",
    "TRACK_TEMPLATES",
    "TRUSTED_PROXIES",
    "WEBHOOKS",
    "IPNetwork",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Set when the app is built (create_app).
SETTINGS = web.AppKey("settings", Settings)
LINKS = web.AppKey("links", Links)
TRUSTED_PROXIES = web.AppKey("trusted_proxies", tuple[IPNetwork, ...])
STOPPING = web.AppKey("stopping", asyncio.Event)  # set once the listener closes (readiness says so)

# Set on start-up, once Redis and the provider client are made (closed on clean-up).
REDIS = web.AppKey("redis", Redis)
STORE = web.AppKey("store", HubStore)
CUSTOMERS = web.AppKey("customers", CustomerStore)
CONVERSATIONS = web.AppKey("conversations", Conversations)
WEBHOOKS = web.AppKey("webhooks", Webhooks)
RELAY = web.AppKey("relay", Relay)
SMS: web.AppKey[TwilioSms] = web.AppKey("sms")
KEYRING = web.AppKey("keyring", KeyRing)

# The tracking page's (hub.track), made when its routes are added.
TRACK_TEMPLATES = web.AppKey("track_templates", jinja2.Environment)
TRACK_LANGUAGES = web.AppKey("track_languages", tuple[tuple[str, str], ...])  # (code, name in itself)
TRACK_STRINGS = web.AppKey("track_strings", dict[str, dict[str, Any]])  # language -> the page's strings
TRACK_CSRF_KEY = web.AppKey("track_csrf_key", bytes)  # the HMAC key of the forms' CSRF tokens

# The sandbox console's (hub.console, hub dev only).
CONSOLE_TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
CONSOLE_DEMO = web.AppKey("console_demo", dict[str, Any])  # the demo route's round, run tag and task

# The shops (hub.api_merchants fills it on start-up; the tracking page reads it too).
MERCHANTS = web.AppKey("merchants", Merchants)

# The operators' dashboard's (hub.dashboard), made when its routes are added.
DASHBOARD_TEMPLATES = web.AppKey("dashboard_templates", jinja2.Environment)
DASHBOARD_CSRF_KEY = web.AppKey("dashboard_csrf_key", bytes)  # the HMAC key of the forms' CSRF tokens
# "Now" of the figures' ranges (unix seconds): time.time, or a test's clock set by create_app's extra_setup.
DASHBOARD_CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("dashboard_clock")
