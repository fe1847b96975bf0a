"""`hub dev`: the sandbox relay pool it gives the tour, and one Redis per data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hub.config import Settings, load_settings
from hub.dev import DEV_RELAY_POOL, dev_settings
from hub.redis_server import DataDirInUse, EmbeddedRedis, free_port
from tests.conftest import ROOT


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(ROOT / "config.yaml", environ={}, data_dir=str(tmp_path), secret_key="s" * 32, **overrides)


def test_hub_dev_opens_relay_sessions_from_a_sandbox_pool_unless_one_is_configured(tmp_path: Path) -> None:
    origin = "http://127.0.0.1:8080"
    plain = dev_settings(_settings(tmp_path), redis_url="redis://x", origin=origin, smtp_port=2525)
    assert plain.relay.pool == DEV_RELAY_POOL and plain.relay.auto_open
    mine = ("+4915700000999",)
    configured = _settings(tmp_path, **{"relay.pool": list(mine)})
    assert dev_settings(configured, redis_url="redis://x", origin=origin, smtp_port=2525).relay.pool == mine


def test_hub_dev_has_an_admin_key_for_the_dashboard_and_lists_slots_best_first(tmp_path: Path) -> None:
    origin = "http://127.0.0.1:8080"
    plain = dev_settings(_settings(tmp_path), redis_url="redis://x", origin=origin, smtp_port=2525)
    assert plain.admin_api_key and plain.admin_api_key.startswith("dev-admin-")
    assert any(k.source == "admin" and "admin" in k.scopes for k in plain.all_keys())
    assert plain.availability.order_slots
    given = _settings(tmp_path, admin_api_key="mine-" + "a" * 32)
    mine = dev_settings(given, redis_url="redis://x", origin=origin, smtp_port=2525)
    assert mine.admin_api_key == given.admin_api_key


def test_a_data_directory_serves_one_redis_at_a_time(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        with pytest.raises(DataDirInUse, match=f"pid {os.getpid()}"):
            EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    finally:
        first.stop()
    # Stopped (or killed, as a crash would), the directory is free again.
    again = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    again.kill()
    EmbeddedRedis(tmp_path / "redis", appendonly=False).start().stop()


def _dev(port: int, data_dir: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update({"HUB_DATA_DIR": str(data_dir), "HUB_LOG_LEVEL": "WARNING"})
    cmd = [sys.executable, "-m", "hub", "dev", "--port", str(port)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_until_running(dev: subprocess.Popen[str]) -> None:
    """Read ``hub dev``'s output up to its banner, printed once Redis and the API are up (the
    output ends, and this fails, if it exits first)."""
    assert dev.stdout is not None
    for line in dev.stdout:
        if "is running" in line:
            return
    raise AssertionError(f"hub dev exited before it was running: {dev.wait()}")


@pytest.mark.slow
def test_a_second_hub_dev_on_the_same_data_stops_and_names_the_first(tmp_path: Path) -> None:
    first_port = free_port()
    first = _dev(first_port, tmp_path / "var")
    try:
        _wait_until_running(first)
        second = _dev(free_port(), tmp_path / "var")
        _, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert f"pid {first.pid}: " in err and "hub dev" in err and "HUB_DATA_DIR=" in err, err
        assert first.poll() is None  # the first one runs on, untouched
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert first.returncode == 0
