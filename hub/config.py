"""Settings: one typed object, read once at start-up.

Sources, later wins: the defaults in the models below, ``config.yaml`` (or the file named by
``HUB_CONFIG``), then environment variables. An environment variable ``HUB_<PATH>`` overrides
the setting at that path, with ``__`` between levels: ``HUB_REDIS_URL`` sets ``redis_url`` and
``HUB_TWILIO__AUTH_TOKEN`` sets ``twilio.auth_token``. Values are read as YAML scalars, so
``HUB_WORKER__MAX_JOBS=50`` is an integer and ``HUB_SANDBOX__ENABLED=false`` a boolean.

A missing or wrong value fails at start-up with ``ConfigError`` naming the key.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["MILESTONES", "ApiKey", "ConfigError", "Settings", "load_settings"]

MILESTONES = (
    "order_confirmed",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "arriving_soon",
    "eta_changed",
    "delivered",
    "delivery_failed",
    "exception",
    "rescheduled",
    "ready_for_pickup",
    "returned",
)
Channel = Literal["sms", "email", "push"]
ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiKey(_Model):
    source: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: tuple[str, ...] = ("events", "read")


class ApiSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    batch_limit: int = Field(1000, ge=1)
    keys: tuple[ApiKey, ...] = ()


class SenderSettings(_Model):
    name: str = "Parcelhub"
    help_url: str | None = None


class TwilioSettings(_Model):
    account_sid: str = "ACsandbox0000000000000000000000000"
    auth_token: str = "sandbox-auth-token"
    base_url: str = "https://api.twilio.com"
    from_number: str | None = "+15005550006"
    messaging_service_sid: str | None = None
    timeout: float = Field(10.0, gt=0)


class SmtpSettings(_Model):
    host: str = "127.0.0.1"
    port: int = Field(2525, ge=0, le=65535)
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool = False
    from_address: str = "Parcelhub <updates@parcelhub.example>"
    timeout: float = Field(10.0, gt=0)
    pool_size: int = Field(8, ge=1, le=64)  # open SMTP connections per worker process


class FcmSettings(_Model):
    project_id: str = "hub-sandbox"
    base_url: str = "https://fcm.googleapis.com"
    credentials_file: str | None = None
    timeout: float = Field(10.0, gt=0)
    # Concurrent sends per worker process. FCM speaks HTTP/2 (one connection carries them all);
    # over HTTP/1.1 (the sandbox) every extra connection costs CPU on each request.
    max_concurrency: int = Field(8, ge=1, le=256)


class WorkerSettings(_Model):
    queue_name: str = "hub:queue"
    max_jobs: int = Field(100, ge=1)
    job_timeout: float = Field(60.0, gt=0)
    max_tries: int = Field(6, ge=1)
    retry_base_delay: float = Field(5.0, ge=0)
    completion_wait: float = Field(20.0, ge=0)


class RetentionSettings(_Model):
    idempotency_days: int = Field(7, ge=1)
    message_log_days: int = Field(30, ge=1)
    timeline_days: int = Field(90, ge=1)


class SandboxSettings(_Model):
    enabled: bool = False
    smtp_port: int = Field(0, ge=0, le=65535)
    invalid_numbers: tuple[str, ...] = ()
    unregistered_tokens: tuple[str, ...] = ()


class Settings(_Model):
    redis_url: str | None = None
    api_key: str | None = None  # a plain key for source "default" (dev and small setups)
    admin_api_key: str | None = None  # a plain key with every scope, including unmasked views
    secret_key: str | None = None  # signs links (unsubscribe, self-service); set it in production
    public_url: str = "http://127.0.0.1:8080"
    link_base: str | None = None
    default_region: str = "DE"
    default_locale: str = "en"
    default_timezone: str = "Europe/Berlin"
    templates_dir: str = str(ROOT / "templates")
    data_dir: str = "var"
    log_level: str = "INFO"
    api: ApiSettings = ApiSettings()
    sender: SenderSettings = SenderSettings()
    twilio: TwilioSettings = TwilioSettings()
    smtp: SmtpSettings = SmtpSettings()
    fcm: FcmSettings = FcmSettings()
    worker: WorkerSettings = WorkerSettings()
    retention: RetentionSettings = RetentionSettings()
    sandbox: SandboxSettings = SandboxSettings()
    # Channels used per milestone unless the customer's preferences say otherwise. When none of
    # them is reachable (no contact, opted out), the first reachable channel of `fallback` is used.
    channels: dict[str, tuple[Channel, ...]] = {
        "order_confirmed": ("email",),
        "shipped": ("email", "push"),
        "in_transit": ("push",),
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
    fallback: tuple[Channel, ...] = ("push", "sms", "email")

    @field_validator("channels")
    @classmethod
    def _known_milestones(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - set(MILESTONES))
        if unknown:
            raise ValueError(f"unknown milestone(s): {', '.join(unknown)}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from preferences.validation import check_timezone

        return check_timezone(value)

    def all_keys(self) -> list[ApiKey]:
        keys = list(self.api.keys)
        if self.api_key:
            keys.append(ApiKey(source="default", sha256=hash_key(self.api_key), scopes=("events", "read")))
        if self.admin_api_key:
            keys.append(ApiKey(source="admin", sha256=hash_key(self.admin_api_key), scopes=("events", "read", "admin")))
        return keys

    def replace(self, **changes: Any) -> Settings:
        """A copy with top-level or dotted (``"smtp.port"``) settings changed."""
        data = self.model_dump()
        for key, value in changes.items():
            _set_path(data, key.split("."), value, key)
        return _validate(data)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _set_path(data: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
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
    env = os.environ if environ is None else environ
    path = Path(path or env.get("HUB_CONFIG") or ROOT / "config.yaml")
    data: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded
    for name, raw in env.items():
        if not name.startswith("HUB_") or name == "HUB_CONFIG":
            continue
        parts = name[4:].lower().split("__")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, (int, float, bool)) and parts[-1] in _STRING_KEYS:
            value = raw
        _set_path(data, parts, value, name)
    for key, value in overrides.items():
        _set_path(data, key.split("."), value, key)
    return _validate(data)


# Keys whose values are strings even when they look like numbers (tokens, keys, numbers).
_STRING_KEYS = {"api_key", "admin_api_key", "auth_token", "password", "account_sid", "from_number", "username"}
