"""What ships: the product wheel and the container image hold no benchmark or chaos code; `hub
bench` and `hub chaos` run from a source checkout and say how to get one when there is none."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from hub.cli import PROOFS_MISSING, main
from proofs.bench_scale import DEFAULT_PLOT
from tests.conftest import ROOT

# What a wheel is built from: the checkout without its caches, virtualenv, data and docs.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "docs", "__pycache__", "*.egg-info", "build", "dist", ".*_cache"
)


def _bdist_wheel_available() -> bool:
    import setuptools

    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _wheel_modules(tmp_path: Path) -> list[str]:
    """The files of the wheel setuptools builds from this checkout, offline, in ``tmp_path``."""
    src, out = tmp_path / "src", tmp_path / "out"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCE)
    if _bdist_wheel_available():
        build = "import sys; from setuptools import build_meta as b; b.build_wheel(sys.argv[1])"
        subprocess.run([sys.executable, "-c", build, str(out)], cwd=src, check=True, capture_output=True)
        (wheel,) = out.glob("delivery_hub-*.whl")
        return zipfile.ZipFile(wheel).namelist()
    # An older setuptools without the `wheel` package has no bdist_wheel; its build step writes
    # the same package files a wheel would hold (less the metadata) to build/lib.
    build = "from setuptools import setup; setup()"
    args = [sys.executable, "-c", build, "-q", "build", "--build-base", str(out)]
    subprocess.run(args, cwd=src, check=True, capture_output=True)
    return [str(p.relative_to(out / "lib")) for p in (out / "lib").rglob("*") if p.is_file()]


def test_the_wheel_holds_the_product_and_no_benchmark_or_chaos_code(tmp_path: Path) -> None:
    names = _wheel_modules(tmp_path)
    assert {"hub/cli.py", "hub/api.py", "channels/sms.py", "preferences/store.py"} <= set(names)
    proof = [n for n in names if n.startswith(("proofs/", "tests/")) or "bench" in n or "chaos" in n]
    assert proof == []


def test_the_container_image_copies_no_proofs() -> None:
    copies = [line.split() for line in (ROOT / "deploy" / "Containerfile").read_text().splitlines()]
    sources = {part for line in copies if line[:1] == ["COPY"] for part in line[1:-1]}
    assert sources and "." not in sources and not any("proofs" in s or "tests" in s for s in sources)


def test_hub_bench_without_the_proofs_says_how_to_get_them(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # None in sys.modules is how Python spells "this package cannot be imported".
    monkeypatch.setitem(sys.modules, "proofs", None)
    monkeypatch.setitem(sys.modules, "proofs.cli", None)
    assert main(["bench", "burst", "--events", "10"]) == 2
    assert main(["chaos", "worker-kill"]) == 2
    err = capsys.readouterr().err
    assert PROOFS_MISSING in err and "pip install -e '.[bench]'" in err


def test_hub_bench_help_works_from_anywhere() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hub", "bench", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "email-peer" in done.stdout


def test_the_scaling_plot_goes_to_var_unless_told_where() -> None:
    # docs/benchmarks-scaling.png is regenerated on purpose only (docs/benchmarks.md names how).
    assert DEFAULT_PLOT == ROOT / "var" / "benchmarks-scaling.png"


def test_the_wheel_holds_the_tracking_page_assets_and_the_vendored_map_library(tmp_path: Path) -> None:
    names = set(_wheel_modules(tmp_path))
    leaflet = "hub/static/vendor/leaflet/"
    assert {"hub/static/track.js", "hub/static/track.css", "hub/static/track-map.css"} <= names
    assert {leaflet + f for f in ("leaflet.js", "leaflet.css", "LICENSE", "images/marker-icon.png")} <= names
