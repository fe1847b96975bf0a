"""Generate docs/configuration.md from the settings model: ``python -m hub.confdoc``.

Every setting, its ``HUB_*`` variable, type and default come from ``hub.config.Settings``; the
descriptions are the fields' docstrings. A test keeps the committed file in step.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from pydantic import BaseModel

from .config import ROOT, Settings
from .vocabulary import CHANNELS, MILESTONES

__all__ = ["render"]

_HEAD = """# Configuration reference

Generated from the settings model by `python -m hub.confdoc > docs/configuration.md`; do not edit
by hand.

Settings are read once at start-up: the defaults below (they live only in the settings model),
then `config.yaml` (or the file named by `HUB_CONFIG`; it holds what a deployment sets), then
environment variables. `HUB_<PATH>` overrides the setting at that path, with
`__` between levels. Values are taken as strings and converted to the setting's type
(`HUB_WORKER__MAX_JOBS=50`, `HUB_SMTP__START_TLS=true`); lists and mappings are written as
YAML/JSON (`HUB_API__KEYS='[{source: shop, sha256: …}]'`); an empty value means unset.
`HUB_<PATH>_FILE` reads the value from a file instead, for container and systemd secrets
(`HUB_TWILIO__AUTH_TOKEN_FILE=/run/secrets/twilio_token`; a trailing newline is dropped).
A wrong value stops the process at start-up with an error that names the key.

Secrets (`api_key`, `admin_api_key`, `secret_key`, `twilio.auth_token`, `smtp.password`, the
adapters' `secret`s, the FCM credentials file) belong in the environment or in files readable only by the service,
never in `config.yaml` or the repository.

| key | environment variable | type | default | what it does |
|---|---|---|---|---|
"""


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    channels = "Literal[" + ", ".join(f"'{c}'" for c in CHANNELS) + "]"
    text = re.sub(r"\bhub\.\w+\.", "", text).replace(channels, "channel")
    milestones = "Literal[" + ", ".join(f"'{m}'" for m in MILESTONES) + "]"
    text = text.replace(milestones, "milestone")
    text = text.replace("Literal['send', 'push_only', 'defer']", "send/push_only/defer")
    return text.replace(" | ", " or ")


def _default(value: Any) -> str:
    if isinstance(value, BaseModel):
        return f"`{json.dumps(value.model_dump())}`"
    if isinstance(value, str) and str(ROOT) in value:
        value = value.replace(str(ROOT), "<install dir>")
    if isinstance(value, dict) and value:
        return "see below"
    return f"`{json.dumps(value, default=list)}`"


def _rows(model: type[BaseModel], prefix: str = "") -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{path}.")
            continue
        env = "HUB_" + path.upper().replace(".", "__")
        desc = (field.description or "").replace("\n", " ").replace("|", "\\|")
        desc = " ".join(desc.split())
        rows.append(f"| `{path}` | `{env}` | {_type_name(annotation)} | {_default(field.default)} | {desc} |")
    return rows


def render() -> str:
    defaults = Settings()
    channels = "\n".join(f"| `{m}` | {', '.join(chs)} |" for m, chs in defaults.channels.items())
    p = defaults.policy
    policy = "\n".join(
        f"| `{m}` | {p.ttl_minutes.get(m, 'never')} | {'yes' if m in p.window_bound else ''} | "  # type: ignore[call-overload]
        f"{p.urgent.get(m, 'defer')} | {'yes' if m in p.collapsible else ''} | "  # type: ignore[call-overload]
        f"{', '.join(p.obsoleted_by.get(m, ())) or '—'} |"  # type: ignore[call-overload]
        for m in MILESTONES
    )
    zones = ", ".join(f"{c}: {z}" for c, z in p.timezone_by_country.items())
    return (
        _HEAD
        + "\n".join(_rows(Settings))
        + "\n\n## Default channels per milestone (`channels`)\n\n| milestone | channels |\n|---|---|\n"
        + channels
        + "\n\n## Delivery policy per milestone (`policy.*`)\n\n"
        + "Time to live in minutes (`ttl_minutes`), whether the ETA window's end also ends it "
        + "(`window_bound`), behaviour in quiet hours (`urgent`), collapsing (`collapsible`), and "
        + "the newer milestones that supersede a waiting message (`obsoleted_by`; a newer event of "
        + "the same milestone always does). See [delivery-policy.md](delivery-policy.md).\n\n"
        + "| milestone | ttl_minutes | window_bound | in quiet hours | collapsible | obsoleted_by |\n"
        + "|---|---:|---|---|---|---|\n"
        + policy
        + f"\n\nDefault `policy.timezone_by_country`: {zones}.\n"
    )


if __name__ == "__main__":
    sys.stdout.write(render())
