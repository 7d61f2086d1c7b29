"""Errors of the shared foundation.

    MirrorError
    ├── ConfigError        env_config.json (or an override) is invalid: names the key and value
    ├── ModelFileError     a model file is missing, unknown or fails its pinned sha256
    └── LaunchError        a role could not be started (port in use, child died, not healthy)
"""

from __future__ import annotations


class MirrorError(Exception):
    """Base of the foundation's errors."""


class ConfigError(MirrorError):
    """The configuration is invalid. The message names the key, the value and the fix."""


class ModelFileError(MirrorError):
    """A model file is missing, unknown, or does not match its pinned sha256."""


class LaunchError(MirrorError):
    """A process of a role could not be started or did not become healthy."""
