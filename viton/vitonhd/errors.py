"""What can go wrong in the VITON-HD engine.

Exception tree::

    VitonHDError                 base of everything raised by viton.vitonhd
    ├── CheckpointError          a checkpoint file is missing, unreadable, unsafe, or does not fit the network
    ├── DeviceUnavailable        the requested torch device does not exist on this machine
    └── InputError               person / garment data that breaks the input contract (shape, dtype, labels, pose)

Every message names the offending file, array or value and says what was expected.
"""

from __future__ import annotations


class VitonHDError(Exception):
    """Base class of every error raised by viton.vitonhd."""


class CheckpointError(VitonHDError):
    """A checkpoint is missing, corrupt, not loadable with ``weights_only=True``, or does not
    match the network (``strict=True``). The message starts with the file's path."""


class DeviceUnavailable(VitonHDError):  # noqa: N818 - named after what went wrong (STYLE.md)
    """The configured device (e.g. ``cuda``) is not available here."""


class InputError(VitonHDError, ValueError):
    """Person or garment data that does not satisfy the adapter's input contract."""
