"""Settings: one typed object, read once at start-up.

Sources, later wins: the defaults in the models (the only place they live), ``config.yaml`` (or
the file named by ``HUB_CONFIG``; it carries what a deployer sets), then environment variables.
An environment variable ``HUB_<PATH>`` overrides the setting at that path, with ``__`` between
levels: ``HUB_REDIS_URL`` sets ``redis_url`` and ``HUB_TWILIO__AUTH_TOKEN`` sets
``twilio.auth_token``. Values are strings converted to the setting's type
(``HUB_WORKER__MAX_JOBS=50``, ``HUB_SMTP__START_TLS=true``); lists and mappings are written as
YAML/JSON (``HUB_FALLBACK='[sms, email]'``); an empty value means unset. ``HUB_<PATH>_FILE``
reads the value from that file instead (container and systemd secrets:
``HUB_TWILIO__AUTH_TOKEN_FILE=/run/secrets/twilio_token``), its trailing newline dropped.

pydantic-settings reads the variables (the prefix, the levels, names without case, decoding
only for settings that hold a collection). Three documented rules it has no switch for stay
here: collections are YAML as well as JSON; ``_FILE`` variables each name a file (its
``secrets_dir`` wants one directory of files named after the settings); and a value replaces
what it names whole, over the defaults: a table given in the file or in ``HUB_CHANNELS`` replaces
the default table, ``HUB_CHANNELS__DELIVERED`` changes that one entry and keeps the others
(pydantic-settings merges mappings from two sources key by key, and never with a default).

A missing or wrong value fails at start-up with ``ConfigError`` naming the key. The sections are
in ``config_sections``, ``config_policy`` and ``adapters_settings``; the words they use
(milestones, channels, webhook events) in ``vocabulary``.
"""

# Mutable defaults are safe here: pydantic copies them per instance. ruff knows that only of
# classes it sees derive from BaseModel in the same file, and Section comes from config_sections.
# ruff: noqa: RUF012

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from preferences.validation import check_timezone

from .adapters_settings import AdapterSettings
from .config_availability import AvailabilitySettings, ConfirmationSettings
from .config_operators import DashboardSettings, FeedbackSettings, StatsSettings
from .config_policy import PolicySettings
from .config_sections import (
    ApiKey,
    ApiSettings,
    BrandSettings,
    ConversationSettings,
    FcmSettings,
    OpsSettings,
    RedisSentinelSettings,
    RelaySettings,
    RetentionSettings,
    SandboxSettings,
    Section,
    SenderSettings,
    SmtpSettings,
    TrackingSettings,
    TwilioHookSettings,
    TwilioSettings,
    WebhookSettings,
    WhatsAppSettings,
    WorkerSettings,
)
from .vocabulary import MILESTONES, Channel

__all__ = [
    "ROOT",
    "ConfigError",
    "Settings",
    "check_secrets",
    "hash_key",
    "load_settings",
    "runs_locally",
    "weak_secrets",
]

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the key."""


class Settings(Section):
    redis_url: str | None = None
    """Redis URL, e.g. redis://10.0.0.5:6379/0. `hub dev` starts a private Redis when unset. For
    failover through Redis Sentinel set redis_sentinel.sentinels instead (one of the two)."""
    redis_sentinel: RedisSentinelSettings = RedisSentinelSettings()
    api_key: str | None = None
    """A plain API key for source "default" (scopes events, read); secret, environment only. At
    least 20 characters unless public_url is on this machine."""
    admin_api_key: str | None = None
    """A plain API key with every scope (events, read, erase, admin); secret, environment only. At
    least 20 characters unless public_url is on this machine."""
    secret_key: str | None = None
    """Signs links, receipts and form tokens. Required for `hub api` and `hub worker`; at least 32
    random characters unless public_url is on this machine (docs/deployment.md)."""
    public_url: str = "http://127.0.0.1:8080"
    """How customers and providers reach this hub (links, Twilio status callbacks)."""
    default_region: str = "DE"
    """Region for phone numbers written without a country code."""
    default_locale: str = "en"
    """Locale when neither the customer nor the event gives one (also the last fallback)."""
    default_timezone: str = "Europe/Berlin"
    """IANA time zone when the customer has none."""
    templates_dir: str = str(ROOT / "templates")
    """Where the message templates live."""
    data_dir: str = "var"
    """Where `hub dev` keeps its Redis data and generated secret."""
    log_level: str = "INFO"
    """Logging level."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """json: one JSON object per line (ids and masked contacts as fields); console: readable
    lines; auto: console when stderr is a terminal, else json."""
    ops: OpsSettings = OpsSettings()
    api: ApiSettings = ApiSettings()
    sender: SenderSettings = SenderSettings()
    twilio: TwilioSettings = TwilioSettings()
    smtp: SmtpSettings = SmtpSettings()
    fcm: FcmSettings = FcmSettings()
    worker: WorkerSettings = WorkerSettings()
    retention: RetentionSettings = RetentionSettings()
    sandbox: SandboxSettings = SandboxSettings()
    webhooks: WebhookSettings = WebhookSettings()
    twilio_hooks: TwilioHookSettings = TwilioHookSettings()
    conversation: ConversationSettings = ConversationSettings()
    relay: RelaySettings = RelaySettings()
    policy: PolicySettings = PolicySettings()
    tracking: TrackingSettings = TrackingSettings()
    adapters: AdapterSettings = AdapterSettings()
    channels: dict[str, tuple[Channel, ...]] = {
        "order_confirmed": ("email",),
        "shipped": ("email", "push"),
        "in_transit": ("push",),
        "scheduled": ("sms", "push"),
        "out_for_delivery": ("sms", "push", "email"),
        "arriving_soon": ("sms", "push"),
        "eta_changed": ("push", "sms"),
        "delivered": ("push", "email"),
        "delivery_failed": ("sms", "email", "push"),
        "exception": ("sms", "email"),
        "rescheduled": ("email", "push"),
        "ready_for_pickup": ("sms", "email", "push"),
        "returned": ("email",),
    }
    """Channels per milestone unless the customer's preferences say otherwise."""
    fallback: tuple[Channel, ...] = ("push", "sms", "email")
    """When none of a milestone's channels reaches the customer, the first reachable one of these."""
    brands: BrandSettings = BrandSettings()
    """Shops (merchants) and how their identity is used (docs/brands.md)."""
    whatsapp: WhatsAppSettings = WhatsAppSettings()
    """WhatsApp through Twilio: the sender and its approved templates (docs/deployment.md)."""
    availability: AvailabilitySettings = AvailabilitySettings()
    """When customers are home: the learned model and its pooled prior (docs/availability.md)."""
    dashboard: DashboardSettings = DashboardSettings()
    """The operators' dashboard at /dashboard (docs/dashboard.md)."""
    feedback: FeedbackSettings = FeedbackSettings()
    """Ratings: what counts as low (the feedback.low webhook, the operators' follow-up list)."""
    stats: StatsSettings = StatsSettings()
    """The operators' figures: hourly counters read by GET /v1/stats and the dashboard."""
    confirmation: ConfirmationSettings = ConfirmationSettings()
    """Asking before the route is planned: who a `scheduled` event asks (docs/self-service.md)."""

    @field_validator("channels")
    @classmethod
    def _known_milestones(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - set(MILESTONES))
        if unknown:
            raise ValueError(f"unknown milestone(s): {', '.join(unknown)}")
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if self.redis_url and self.redis_sentinel.sentinels:
            raise ValueError("set redis_url or redis_sentinel.sentinels, not both")
        return self

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return check_timezone(value)

    def all_keys(self) -> list[ApiKey]:
        keys = list(self.api.keys)
        if self.api_key:
            keys.append(ApiKey(source="default", sha256=hash_key(self.api_key), scopes=("events", "read")))
        if self.admin_api_key:
            scopes = ("events", "read", "erase", "admin")
            keys.append(ApiKey(source="admin", sha256=hash_key(self.admin_api_key), scopes=scopes))
        return keys

    def replace(self, **changes: Any) -> Settings:
        """A copy with top-level or dotted (``"smtp.port"``) settings changed."""
        data = self.model_dump()
        for key, value in changes.items():
            _set_path(data, key.split("."), value, key)
        return _validate(data)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# -- secrets strong enough for a deployment ---------------------------------------------------
SECRET_KEY_MIN = 32
API_KEY_MIN = 20
_SECRET_KEY_BITS = 100  # estimated from the characters used; a random 32-character hex key has ~115
SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def runs_locally(settings: Settings) -> bool:
    """Whether this hub is a local run (``hub dev``, tests, benchmarks): its ``public_url`` is on
    this machine, so neither customers nor Twilio can reach it."""
    host = urlsplit(settings.public_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _predictable(secret: str, bits: float) -> bool:
    """A secret made of one chunk repeated, or whose characters carry fewer than ``bits`` bits
    (Shannon entropy of its own character counts, times its length)."""
    if any(len(secret) % n == 0 and secret == secret[:n] * (len(secret) // n) for n in range(1, len(secret) // 2 + 1)):
        return True
    counts = Counter(secret)
    per_char = -sum(c / len(secret) * math.log2(c / len(secret)) for c in counts.values())
    return per_char * len(secret) < bits


def weak_secrets(settings: Settings) -> dict[str, str]:
    """The settings too weak for a hub others can reach: name -> what is wrong (starting with the name)."""
    problems = {}
    secret = settings.secret_key
    if secret is not None and len(secret) < SECRET_KEY_MIN:
        problems["secret_key"] = f"secret_key is {len(secret)} characters; use at least {SECRET_KEY_MIN} random ones"
    elif secret is not None and _predictable(secret, _SECRET_KEY_BITS):
        problems["secret_key"] = "secret_key is too predictable (repeated or few different characters)"
    for name in ("api_key", "admin_api_key"):
        key = getattr(settings, name)
        if key is not None and len(key) < API_KEY_MIN:
            problems[name] = f"{name} is {len(key)} characters; use at least {API_KEY_MIN} random ones"
        elif key is not None and _predictable(key, 0):
            problems[name] = f"{name} is one chunk repeated"
    if settings.twilio.auth_token == TwilioSettings.model_fields["auth_token"].default:
        problems["twilio.auth_token"] = (
            "twilio.auth_token is the public sandbox default, with which anyone could sign Twilio's webhooks"
            " (set HUB_TWILIO__AUTH_TOKEN to your account's token)"
        )
    return problems


def check_secrets(settings: Settings) -> None:
    """Refuse weak secrets (``weak_secrets``) unless this is a local run (``runs_locally``):
    a short ``secret_key`` lets anyone forge links and CSRF tokens offline."""
    problems = weak_secrets(settings)
    if problems and not runs_locally(settings):
        raise ConfigError(
            f"weak secrets for a hub at {settings.public_url}: {'; '.join(problems.values())}. "
            f"Generate a secret with: {SECRET_HINT}"
        )


def _set_path(data: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{name}: {part!r} is not a section")
        node = child
    node[path[-1]] = value


def _validate(data: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid configuration: {problems}") from e


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """The settings from the file (``path``, else ``HUB_CONFIG``, else config.yaml; a missing file
    is no error), then the ``HUB_*`` variables of ``environ`` (default: this process's), then
    ``overrides`` by dotted path (``**{"smtp.port": 2525}``)."""
    env = os.environ if environ is None else environ
    given = _read_file(Path(path or env.get("HUB_CONFIG") or ROOT / "config.yaml"))
    data = _sections_merged(Settings().model_dump(), given, Settings)
    variables = _variables(env)
    for name in variables:
        _drop_path(data, _path_of(name))  # the variable's value replaces what was at its path whole
    data = _merged(data, _environment(variables))
    for key, value in overrides.items():
        _set_path(data, key.split("."), value, key)
    return _validate(data)


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return loaded


def _path_of(name: str) -> list[str]:
    return name[4:].lower().split("__")


def _variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``HUB_*`` variables that name settings, a ``HUB_<PATH>_FILE`` replaced by ``HUB_<PATH>``
    with the file's content (``HUB_CONFIG`` names the file of settings, not one setting)."""
    found: dict[str, str] = {}
    for name, raw in environ.items():
        if not name.startswith("HUB_") or name == "HUB_CONFIG":
            continue
        if name.endswith("_FILE") and not _is_setting(_path_of(name)):
            target = name.removesuffix("_FILE")
            if target in environ:
                raise ConfigError(f"{target} and {name} are both set; set one of them")
            name, raw = target, _read_secret_file(name, raw)
        found[name] = raw
    return found


def _is_setting(parts: list[str]) -> bool:
    """Whether ``parts`` names a field of the settings model (``fcm.credentials_file`` is one)."""
    model: Any = Settings
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return True


def _read_secret_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text().removesuffix("\n").removesuffix("\r")
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror}") from e


def _drop_path(data: dict[str, Any], path: list[str]) -> None:
    node: Any = data
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


def _sections_merged(below: dict[str, Any], above: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """The file's values over the defaults: a section key by key, a setting whole (a table such as
    ``channels`` given in the file replaces the default table, as a value does)."""
    merged = dict(below)
    for key, value in above.items():
        field = model.model_fields.get(key)
        section = field.annotation if field else None
        under = merged.get(key)
        if isinstance(section, type) and issubclass(section, BaseModel) and isinstance(under, dict):
            merged[key] = _sections_merged(under, value, section) if isinstance(value, Mapping) else value
        else:
            merged[key] = value
    return merged


def _merged(below: dict[str, Any], above: Mapping[str, Any]) -> dict[str, Any]:
    """The environment's values over the rest, every level merged key by key: a variable's own
    path says what it replaces (``_drop_path`` has made room), so ``HUB_CHANNELS__DELIVERED``
    changes one entry of the table and leaves the others."""
    merged = dict(below)
    for key, value in above.items():
        under = merged.get(key)
        merged[key] = _merged(under, value) if isinstance(under, dict) and isinstance(value, dict) else value
    return merged


def _environment(variables: Mapping[str, str]) -> dict[str, Any]:
    """The variables as nested settings; an empty one is None (unset). A name that is no setting
    at all (``HUB_COLOUR``) is kept as given, so that validation refuses it by name like a
    misspelt key in the file."""
    try:
        values = _Environment({name: raw for name, raw in variables.items() if raw != ""})()
    except SettingsError as e:
        raise ConfigError(str(e)) from e
    for name, raw in variables.items():
        if raw == "" or _path_of(name)[0] not in Settings.model_fields:
            _set_path(values, _path_of(name), None if raw == "" else raw, name)
    return values


class _Fields(Settings, BaseSettings):
    """The settings as pydantic-settings reads them from ``HUB_*`` variables (never built)."""

    model_config = SettingsConfigDict(env_prefix="HUB_", env_nested_delimiter="__", case_sensitive=False)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over the given variables instead of ``os.environ``,
    collections read as YAML (which includes JSON). Only a value that
    opens a list or mapping is decoded, so ``HUB_FALLBACK=sms`` is refused by validation as not a
    list rather than taken for one, and a secret is never cut at a YAML comment."""

    def __init__(self, variables: Mapping[str, str]) -> None:
        self._given = variables
        super().__init__(_Fields)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._given.items()}

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        if not isinstance(value, str) or not value.lstrip().startswith(("[", "{")):
            return value
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError as e:
            name = next((n for n, v in self._given.items() if v == value), field_name)
            raise ConfigError(f"{name}: not valid YAML/JSON: {e}") from e
