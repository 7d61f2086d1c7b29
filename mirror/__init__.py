"""Shared foundation of every node: configuration, logging, model files, process lifecycle.

Public face:
    load_config(path=None) -> Config      validated env_config.json (+ environment overrides)
    setup_logging(component) -> Logger    the one log format (time, node, component, request id)
    request_context(request_id)           tag log records with a request id
    notify_ready(component, **info)       tell the supervisor a process is serving
    model_path(name) -> Path              a sha256-verified model file
    errors: MirrorError, ConfigError, ModelFileError, LaunchError
"""

from __future__ import annotations

from mirror.config import Config
from mirror.config import load as load_config
from mirror.errors import ConfigError, LaunchError, MirrorError, ModelFileError
from mirror.lifecycle import notify_ready
from mirror.logs import request_context
from mirror.logs import setup as setup_logging
from mirror.models import model_path

__all__ = [
    "Config", "ConfigError", "LaunchError", "MirrorError", "ModelFileError",
    "load_config", "model_path", "notify_ready", "request_context", "setup_logging",
]
