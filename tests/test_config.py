"""Settings: environment overrides, clear errors, and the generated reference kept in step."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from hub.api import create_app
from hub.cli import main as cli_main
from hub.confdoc import render
from hub.config import ConfigError, Settings, load_settings

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


# -- weak secrets are refused where a deployment starts -----------------------------------------
STRONG = {
    "secret_key": "p3Qx9vK_2mTz7LwR4yNc8bHf1sJd6gAe0uVo5iXk",  # secrets.token_urlsafe(30)
    "api_key": "hub_Vd81kPq2Zr7Tn4Lx9Mw",
    "admin_api_key": "hub_Ya3Hc6Rt0Ks5Ub2Gm8Jq",
    "twilio.auth_token": "5f2c1d9e8a7b6c5d4e3f2a1b0c9d8e7f",
    "redis_url": "redis://127.0.0.1:1/0",
    "public_url": "https://hub.example.com",
}
HOW_TO = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def deployment(**changes: object) -> Settings:
    return load_settings(ROOT / "config.yaml", environ={}, **{**STRONG, **changes})


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"secret_key": "s3cret-but-short"}, "secret_key is 16 characters"),
        ({"secret_key": "a" * 40}, "secret_key is too predictable"),
        ({"secret_key": "Password123!" * 4}, "secret_key is too predictable"),
        ({"api_key": "test-key-0123456789"}, "api_key is 19 characters"),
        ({"admin_api_key": "admin"}, "admin_api_key is 5 characters"),
        ({"twilio.auth_token": "sandbox-auth-token"}, "twilio.auth_token is the public sandbox default"),
        (
            {"twilio.auth_token": "sandbox-auth-token", "twilio.base_url": "https://api.dublin.ie1.twilio.com"},
            "twilio.auth_token is the public sandbox default",
        ),
    ],
)
def test_a_deployment_with_a_weak_secret_does_not_start_and_says_how_to_make_one(
    changes: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        create_app(deployment(**changes))
    assert named in str(refused.value) and HOW_TO in str(refused.value)


def test_a_deployment_with_strong_secrets_starts() -> None:
    create_app(deployment())
    create_app(deployment(secret_key=secrets.token_hex(16), api_key=secrets.token_urlsafe(15)))


def test_a_hub_whose_public_url_is_on_this_machine_is_a_local_run_and_not_checked() -> None:
    """`hub dev`, the tests and the benchmarks run so; customers and Twilio cannot reach it."""
    weak = {"secret_key": "test-secret", "api_key": "test-key-0123456789", "twilio.auth_token": "sandbox-auth-token"}
    for origin in ("http://127.0.0.1:8080", "http://localhost:9000", "http://[::1]:8080"):
        create_app(deployment(public_url=origin, **weak))


def test_hub_api_refuses_to_start_with_a_weak_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        "HUB_REDIS_URL": "redis://127.0.0.1:1/0",
        "HUB_PUBLIC_URL": "https://hub.example.com",
        "HUB_SECRET_KEY": "changeme",
        "HUB_API_KEY": STRONG["api_key"],
        "HUB_TWILIO__AUTH_TOKEN": STRONG["twilio.auth_token"],
    }.items():
        monkeypatch.setenv(name, value)
    served: list[object] = []
    monkeypatch.setattr("hub.cli.web.run_app", lambda app, **options: served.append(app))
    assert cli_main(["api", "--port", "1"]) == 2
    err = capsys.readouterr().err
    assert "secret_key is 8 characters" in err and HOW_TO in err
    assert served == []  # never got as far as serving
