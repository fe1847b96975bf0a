"""Settings: environment overrides, clear errors, and the generated reference kept in step."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.confdoc import render
from hub.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_environment_overrides_nested_settings_with_typed_values() -> None:
    s = load_settings(
        ROOT / "config.yaml",
        environ={"HUB_WORKER__MAX_JOBS": "7", "HUB_REDIS_URL": "redis://x:1/0", "HUB_TWILIO__AUTH_TOKEN": "12345"},
    )
    assert s.worker.max_jobs == 7
    assert s.redis_url == "redis://x:1/0"
    assert s.twilio.auth_token == "12345"  # tokens stay strings even when they look numeric


def test_wrong_value_fails_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"worker\.max_jobs"):
        load_settings(ROOT / "config.yaml", environ={"HUB_WORKER__MAX_JOBS": "-1"})
    with pytest.raises(ConfigError, match="default_timezone"):
        load_settings(ROOT / "config.yaml", environ={"HUB_DEFAULT_TIMEZONE": "Atlantis/Capital"})
    with pytest.raises(ConfigError, match=r"smtp\.colour"):
        load_settings(ROOT / "config.yaml", environ={"HUB_SMTP__COLOUR": "blue"})


def test_configuration_reference_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render(), "run: python -m hub.confdoc > docs/configuration.md"


def test_log_lines_carry_the_ids_they_are_about() -> None:
    import logging

    from hub.logs import IdFormatter

    record = logging.LogRecord("hub.pipeline", logging.INFO, __file__, 1, "message %s sent", ("sms",), None)
    record.event_id, record.message_id = "evt-1", "m_abc"
    line = IdFormatter("%(message)s").format(record)
    assert line == "message sms sent event_id=evt-1 message_id=m_abc"


def test_environment_values_are_taken_literally_except_collections() -> None:
    s = load_settings(
        ROOT / "config.yaml",
        environ={
            "HUB_SECRET_KEY": "s3cret #tail",
            "HUB_FALLBACK": "[sms, email]",
            "HUB_SMTP__START_TLS": "true",
            "HUB_ADMIN_API_KEY": "null&1",
        },
    )
    assert s.secret_key == "s3cret #tail"
    assert s.admin_api_key == "null&1"
    assert s.fallback == ("sms", "email")
    assert s.smtp.start_tls is True


def test_secrets_can_come_from_files_named_by_file_variables(tmp_path: Path) -> None:
    token = tmp_path / "twilio_token"
    token.write_text("from-a-file #1\n")
    creds = tmp_path / "fcm.json"
    settings = load_settings(
        ROOT / "config.yaml",
        environ={"HUB_TWILIO__AUTH_TOKEN_FILE": str(token), "HUB_FCM__CREDENTIALS_FILE": str(creds)},
    )
    assert settings.twilio.auth_token == "from-a-file #1"
    assert settings.fcm.credentials_file == str(creds)  # a setting whose own name ends in _file
    with pytest.raises(ConfigError, match="HUB_SMTP__PASSWORD_FILE: cannot read"):
        load_settings(ROOT / "config.yaml", environ={"HUB_SMTP__PASSWORD_FILE": str(tmp_path / "missing")})
