"""Helpers for foundation tests: temporary configs on free ports (see testing.deployment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testing.deployment import ROOT, free_ports, write_config

__all__ = ["ROOT", "free_ports", "make_config"]


def make_config(tmp_path: Path, **overrides: Any) -> Path:
    """A copy of env_config.json on free loopback ports, writing under tmp_path; returns its path."""
    return write_config(tmp_path, overrides)
