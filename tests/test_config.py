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


# -- where a value comes from: the model's defaults < the file < the environment < the caller ----
def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


FILE = """
smtp: {host: file-host, port: 2600}
policy:
  per_customer_hour: {sms: 1, email: 2}
  quiet_hours: {start: "22:00", end: "07:00"}
redis_url: redis://file:1/0
"""


def test_the_environment_wins_over_the_file_and_the_file_over_the_defaults(tmp_path: Path) -> None:
    path = write_config(tmp_path, FILE)
    s = load_settings(path, environ={"HUB_SMTP__HOST": "env-host"})
    assert s.smtp.host == "env-host"  # environment
    assert s.smtp.port == 2600  # file, beside an environment value in the same section
    assert s.smtp.timeout == Settings().smtp.timeout  # default
    assert s.redis_url == "redis://file:1/0"
    s = load_settings(path, environ={"HUB_SMTP__HOST": "env-host"}, **{"smtp.host": "caller", "smtp.port": 1})
    assert (s.smtp.host, s.smtp.port) == ("caller", 1)  # the caller's overrides come last


def test_the_file_is_the_given_one_else_hub_config_else_none(tmp_path: Path) -> None:
    path = write_config(tmp_path, FILE)
    other = tmp_path / "other.yaml"
    other.write_text("smtp: {host: other-host}\n")
    assert load_settings(environ={"HUB_CONFIG": str(path)}).smtp.host == "file-host"
    assert load_settings(other, environ={"HUB_CONFIG": str(path)}).smtp.host == "other-host"
    assert load_settings(tmp_path / "absent.yaml", environ={}) == Settings()
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(write_config(tmp_path, "- a list\n"), environ={})


def test_a_variable_replaces_the_value_it_names_and_only_that(tmp_path: Path) -> None:
    path = write_config(tmp_path, FILE)
    whole = load_settings(path, environ={"HUB_POLICY__PER_CUSTOMER_HOUR": "{push: 3}"})
    assert whole.policy.per_customer_hour == {"push": 3}  # the file's mapping is replaced, not merged
    one = load_settings(path, environ={"HUB_POLICY__PER_CUSTOMER_HOUR__SMS": "5"})
    assert one.policy.per_customer_hour == {"sms": 5, "email": 2}  # one entry of the file's mapping
    start = load_settings(path, environ={"HUB_POLICY__QUIET_HOURS__START": "20:00"}).policy.quiet_hours
    assert start is not None and (start.start, start.end) == ("20:00", "07:00")
    # A table the file gives replaces the default one; a variable for one entry changes only that.
    assert load_settings(path, environ={}).policy.per_customer_hour == {"sms": 1, "email": 2}
    entry = load_settings(tmp_path / "none.yaml", environ={"HUB_POLICY__URGENT__ETA_CHANGED": "send"})
    assert entry.policy.urgent == {**Settings().policy.urgent, "eta_changed": "send"}
    start = load_settings(
        write_config(tmp_path, ""), environ={"HUB_POLICY__QUIET_HOURS__END": "09:00"}
    ).policy.quiet_hours
    assert start is not None and (start.start, start.end) == ("21:00", "09:00")


def test_nested_names_reach_every_level(tmp_path: Path) -> None:
    s = load_settings(
        write_config(tmp_path, ""),
        environ={
            "HUB_TWILIO_HOOKS__TRUST_FORWARDED": "true",  # a section whose name holds a single _
            "HUB_ADAPTERS__GENERIC__SHIPCO__SECRET": "generic-secret",
            "HUB_ADAPTERS__GENERIC__SHIPCO__FIELDS": '{"delivery.id": /id, type: /status}',
            "HUB_ADAPTERS__ONFLEET__TRIGGERS__TASKCREATED": "shipped",
            "HUB_CHANNELS__DELIVERED": "[sms]",
            "HUB_API__KEYS": f"[{{source: shop, sha256: {'a' * 64}}}]",
        },
    )
    assert s.twilio_hooks.trust_forwarded is True
    assert s.adapters.generic["shipco"].secret == "generic-secret"
    assert s.adapters.generic["shipco"].fields == {"delivery.id": "/id", "type": "/status"}
    assert s.adapters.onfleet.triggers["taskcreated"] == "shipped"
    assert s.adapters.onfleet.triggers["taskcompleted"] == "delivered"  # merged over the vendor table
    assert s.channels["delivered"] == ("sms",) and s.channels["shipped"] == Settings().channels["shipped"]
    assert [k.source for k in s.api.keys] == ["shop"]


def test_an_empty_variable_unsets_what_the_file_set(tmp_path: Path) -> None:
    s = load_settings(write_config(tmp_path, FILE), environ={"HUB_REDIS_URL": "", "HUB_POLICY__QUIET_HOURS": ""})
    assert s.redis_url is None
    assert s.policy.quiet_hours is None


def test_a_file_variable_wins_over_the_file_and_cannot_be_doubled(tmp_path: Path) -> None:
    password = tmp_path / "smtp_password"
    password.write_text("from-the-secret-file\r\n")
    path = write_config(tmp_path, "smtp: {password: in-the-file}\n")
    s = load_settings(path, environ={"HUB_SMTP__PASSWORD_FILE": str(password)})
    assert s.smtp.password == "from-the-secret-file"
    secret = tmp_path / "shipco"
    secret.write_text("generic-secret\n")
    s = load_settings(
        path,
        environ={
            "HUB_ADAPTERS__GENERIC__SHIPCO__SECRET_FILE": str(secret),
            "HUB_ADAPTERS__GENERIC__SHIPCO__FIELDS": '{"delivery.id": /id, type: /status}',
        },
    )
    assert s.adapters.generic["shipco"].secret == "generic-secret"
    with pytest.raises(ConfigError, match="HUB_SMTP__PASSWORD and HUB_SMTP__PASSWORD_FILE"):
        load_settings(path, environ={"HUB_SMTP__PASSWORD": "x", "HUB_SMTP__PASSWORD_FILE": str(password)})


def test_a_variable_that_names_no_setting_or_holds_broken_yaml_is_named() -> None:
    with pytest.raises(ConfigError, match="colour"):
        load_settings(ROOT / "config.yaml", environ={"HUB_COLOUR": "blue"})
    with pytest.raises(ConfigError, match="HUB_FALLBACK: not valid YAML/JSON"):
        load_settings(ROOT / "config.yaml", environ={"HUB_FALLBACK": "[sms, email"})
    with pytest.raises(ConfigError, match="fallback"):
        load_settings(ROOT / "config.yaml", environ={"HUB_FALLBACK": "sms"})  # a list is written [sms]
    other = load_settings(ROOT / "config.yaml", environ={"HUB_SECRET_KEY": "{not a mapping", "OTHER_X": "1"})
    assert other.secret_key == "{not a mapping"  # only settings that hold collections are decoded


# -- the shipped file and the generated reference cannot drift from the model -------------------
def test_the_shipped_config_repeats_no_default() -> None:
    """config.yaml carries what a deployer sets; a default written there again would keep its old
    value when the model's changes."""
    import yaml

    def repeated(given: object, default: object, path: str) -> list[str]:
        if isinstance(given, dict) and isinstance(default, dict):
            return [p for k, v in given.items() if k in default for p in repeated(v, default[k], f"{path}{k}.")]
        return [path.rstrip(".")] if given == default else []

    given = yaml.safe_load((ROOT / "config.yaml").read_text()) or {}
    assert repeated(given, Settings().model_dump(mode="json"), "") == []
    assert load_settings(ROOT / "config.yaml", environ={}) == Settings()


def test_every_setting_is_described() -> None:
    from pydantic import BaseModel

    def undescribed(model: type[BaseModel], prefix: str) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():
            nested = [t for t in (field.annotation, *getattr(field.annotation, "__args__", ())) if isinstance(t, type)]
            models = [t for t in nested if issubclass(t, BaseModel)]
            for sub in models:
                missing += undescribed(sub, f"{prefix}{name}.")
            if not models or field.annotation not in models:  # a section itself needs no text
                missing += [] if (field.description or "").strip() else [f"{prefix}{name}"]
        return missing

    assert undescribed(Settings, "") == []
    assert "| |" not in render().replace("|---|", "")


def test_the_vocabulary_is_a_leaf_and_the_customer_models_need_only_it() -> None:
    import ast

    def imported(path: Path) -> set[str]:
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):  # function-level imports count too
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        return {n for n in names if n.split(".")[0] in {"hub", "preferences"}}

    assert imported(ROOT / "hub" / "vocabulary.py") == set()
    for module in ("model.py", "validation.py"):
        assert imported(ROOT / "preferences" / module) <= {"hub.vocabulary"}
