"""The HTTP API (aiohttp), built by ``create_app(settings)``. Stateless: scale it horizontally.

Routes (see docs/api.md and ``/openapi.json``), each in the module that handles it:

    hub.api_events     POST /v1/events, /v1/events/batch
    hub.api_customers  /v1/customers/{id}[/preferences], the e-mail unsubscribe /u/{token}
    hub.api_messages   /v1/deliveries/{id}, /v1/messages..., /v1/push/receipts, /v1/feedback,
                       /v1/webhooks/deliveries
    hub.api_relay      /v1/deliveries/{id}/relay
    hub.api_location   POST /v1/deliveries/{id}/location (the driver app's position)
    hub.api_ops        /healthz, /readyz, /metrics (when ops.metrics)
    hub.apidocs        /openapi.json, /docs
    hub.twilio_hooks   /webhooks/twilio/{sms,status,voice,voice/status} (Twilio-signed)
    hub.track          /t/{token}... the customer's tracking page, /static/
    hub.adapters       /webhooks/{onfleet,aftership,generic/{name}} (vendor-signed)
    hub.api_merchants  /v1/merchants[/{id}]
    hub.api_availability  /v1/customers/{id}/availability, /v1/availability/query
    hub.dashboard      /dashboard... the operators' dashboard (admin key, session cookie)
    hub.api_feedback   /v1/feedback/followups..., /v1/ratings
    hub.api_stats      GET /v1/stats (the operators' figures, JSON or CSV)
    hub.api_answers    POST /v1/push/answers (a push action answering a scheduled question)

Every route module is the same shape: module-level handlers that read what they share from
the application keys in ``hub.appkeys``, and one ``add_routes(app)``. This module fills those
keys (the settings at once, the clients on start-up) and turns errors into the one JSON body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from redis.exceptions import RedisError

from preferences import CustomerStore

from . import (
    adapters,
    api_answers,
    api_availability,
    api_customers,
    api_events,
    api_feedback,
    api_merchants,
    api_messages,
    api_ops,
    api_relay,
    api_stats,
    apidocs,
    dashboard,
    track,
    twilio_hooks,
)
from .api_location import add_routes as add_location_routes
from .apikeys import KeyRing
from .appkeys import (
    CONVERSATIONS,
    CUSTOMERS,
    KEYRING,
    LINKS,
    REDIS,
    RELAY,
    SETTINGS,
    SMS,
    STOPPING,
    STORE,
    TRUSTED_PROXIES,
    WEBHOOKS,
)
from .auth import TooManyFailures
from .config import Settings, check_secrets, weak_secrets
from .conversation import Conversations
from .errors import ApiError, error_response
from .links import Links
from .redis_conn import connect, load_scripts, require_redis
from .relay import Relay
from .render import Renderer
from .store import HubStore

# REDIS stays importable from here for callers that mount extra routes on the app (hub dev).
__all__ = ["REDIS", "create_app"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ROUTES = (
    api_events,
    api_customers,
    api_messages,
    api_ops,
    apidocs,
    api_relay,
    twilio_hooks,
    track,
    adapters,
    api_merchants,
    api_availability,
    dashboard,
    api_feedback,
    api_stats,
    api_answers,
)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except TooManyFailures as e:
        return error_response(e.status, e.code, e.message, headers={"Retry-After": str(e.retry_after)})
    except ApiError as e:
        return error_response(e.status, e.code, e.message, e.fields)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].api.max_body_bytes
        return error_response(413, "body_too_large", f"request body is over the {limit}-byte limit")
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status, "http_error")
        return error_response(e.status, code, e.reason, headers={k: v for k, v in e.headers.items() if k == "Allow"})
    except RedisError:
        log.exception("redis unavailable")
        return error_response(
            503, "store_unavailable", "the store is unavailable; retry later", headers={"Retry-After": "5"}
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal error; it has been logged")


def _check(settings: Settings) -> None:
    """Refuse to build an app that could not work or would be unsafe where others reach it."""
    require_redis(settings)
    if not settings.secret_key:
        raise ValueError("secret_key is required (set HUB_SECRET_KEY)")
    if not settings.all_keys():
        raise ValueError("no API keys configured (set HUB_API_KEY or api.keys)")
    check_secrets(settings)  # a hub others can reach starts only with strong secrets
    weak = {name: problem for name, problem in weak_secrets(settings).items() if name != "twilio.auth_token"}
    if weak:  # a local run (hub dev's sandbox has the sandbox's Twilio token by design)
        log.warning("weak secrets accepted only because public_url is on this machine: %s", "; ".join(weak.values()))


async def _connect(app: web.Application) -> None:
    settings = app[SETTINGS]
    redis = connect(settings)
    await load_scripts(redis)
    app[REDIS] = redis
    app[STORE] = HubStore(redis, settings)
    app[CUSTOMERS] = CustomerStore(redis)
    app[CONVERSATIONS] = Conversations(
        redis, settings, Renderer(settings.templates_dir, settings.default_locale), app[CUSTOMERS]
    )
    app[WEBHOOKS] = app[CONVERSATIONS].webhooks
    app[RELAY] = Relay(redis, settings)
    app[KEYRING] = KeyRing(redis)
    # Imported here, not at the top: the provider libraries load when an API starts serving,
    # never for code that only imports the app (the CLI, the OpenAPI document, tools).
    from .providers import sms_client

    app[SMS] = sms_client(settings, status_callback=None)


async def _disconnect(app: web.Application) -> None:
    await app[SMS].close()
    await app[REDIS].aclose()


async def _stopping(app: web.Application) -> None:
    # aiohttp runs this once the listener is closed, before in-flight requests are awaited:
    # a readiness probe on a kept-alive connection sees 503 from here on.
    app[STOPPING].set()


def create_app(settings: Settings, *, extra_setup: Callable[[web.Application], None] | None = None) -> web.Application:
    _check(settings)
    app = web.Application(middlewares=[errors_middleware], client_max_size=settings.api.max_body_bytes)
    app[SETTINGS] = settings
    app[TRUSTED_PROXIES] = tuple(ipaddress.ip_network(net) for net in settings.api.trusted_proxies)
    app[LINKS] = Links(settings.secret_key or "", settings.public_url)
    app[STOPPING] = asyncio.Event()
    app.on_startup.append(_connect)
    app.on_shutdown.append(_stopping)
    app.on_cleanup.append(_disconnect)
    for module in ROUTES:
        module.add_routes(app)
    add_location_routes(app)  # POST /v1/deliveries/{id}/location, the driver app's position
    if extra_setup is not None:
        extra_setup(app)
    return app
