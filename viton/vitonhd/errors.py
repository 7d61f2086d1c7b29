"""What can go wrong in the VITON-HD engine.

Exception tree::

    VitonHDError                 base of everything raised by viton.vitonhd
    ├── CheckpointError          a checkpoint file is missing, unreadable, unsafe, or does not fit the network
    ├── DeviceUnavailable        the requested torch device does not exist on this machine
    └── InputError               person / garment data that breaks the input contract (shape, dtype, labels)
        └── KeypointsMissing     BODY_25 lacks what VITON-HD cannot do without (both shoulders)

Every message names the offending file, array or value and says what was expected. InputError and
KeypointsMissing are also viton.errors.InvalidInput / PoseIncomplete, so the VITON service replies
with its "bad_input" / "no_pose" codes for them.
"""

from __future__ import annotations

from viton.errors import InvalidInput, PoseIncomplete


class VitonHDError(Exception):
    """Base class of every error raised by viton.vitonhd."""


class CheckpointError(VitonHDError):
    """A checkpoint is missing, corrupt, not loadable with ``weights_only=True``, or does not
    match the network (``strict=True``). The message starts with the file's path."""


class DeviceUnavailable(VitonHDError):  # noqa: N818 - named after what went wrong (STYLE.md)
    """The configured device (e.g. ``cuda``) is not available here."""


class InputError(VitonHDError, InvalidInput):
    """Person or garment data that does not satisfy the adapter's input contract (code "bad_input")."""


class KeypointsMissing(InputError, PoseIncomplete):  # noqa: N818 - named after what went wrong (STYLE.md)
    """A keypoint VITON-HD cannot do without is missing (code "no_pose")."""
