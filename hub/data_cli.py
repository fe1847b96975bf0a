"""`hub keys ...` and `hub customers ...`: API keys, bulk import and export of customers."""

from __future__ import annotations

import argparse
from typing import Any

from .config import Settings

__all__ = ["add_data_commands", "run_data_command"]


def add_data_commands(sub: Any) -> None:
    """Add the ``keys`` and ``customers`` subcommands to ``hub``'s subparsers."""


def run_data_command(settings: Settings, args: argparse.Namespace) -> int | None:
    """Run ``args`` if it is one of these commands (its exit code), else None."""
    return None
