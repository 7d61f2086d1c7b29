"""Errors of the try-on package.

    VitonError                 base of everything raised by viton
    ├── InvalidInput           a tensor has the wrong shape/dtype/range (code "bad_input")
    │   └── PoseIncomplete     keypoints lack what the engine needs, e.g. a shoulder (code "no_pose")
    │       └── LegsNotInView  a bottom or a dress on a photo without hips and knees (code "legs_not_in_view")
    ├── UnknownEngine          viton.engine names no engine we have (code "unknown_engine")
    ├── EngineConfigError      the engine's settings are incomplete (code "engine_config")
    └── EngineFailed           the engine raised while dressing a valid input (code "engine_failed")

Each error carries `code`, the string the service puts in its "error" reply frame.
(The `vitonhd` engine's missing/mismatched checkpoints raise its own CheckpointError.)
"""

from __future__ import annotations


class VitonError(Exception):
    """Base of every try-on error."""

    code = "viton_error"


class InvalidInput(VitonError):  # noqa: N818 (named after what went wrong, per STYLE.md)
    """An input tensor is malformed: the message names the tensor, what was expected and what came."""

    code = "bad_input"


class PoseIncomplete(InvalidInput):  # noqa: N818 (named after what went wrong, per STYLE.md)
    """The keypoints lack a point the engine cannot do without (both shoulders)."""

    code = "no_pose"


class LegsNotInView(PoseIncomplete):  # noqa: N818 (named after what went wrong, per STYLE.md)
    """A bottom or a dress needs the hips and a knee in the photo; they are not there (cut at the waist)."""

    code = "legs_not_in_view"


class UnknownEngine(VitonError):  # noqa: N818 (named after what went wrong, per STYLE.md)
    """The configured engine name is not one we have."""

    code = "unknown_engine"


class EngineConfigError(VitonError):
    """An engine's settings are incomplete, e.g. vitonhd without a checkpoint folder."""

    code = "engine_config"


class EngineFailed(VitonError):  # noqa: N818 (named after what went wrong, per STYLE.md)
    """The engine failed on an input that passed validation."""

    code = "engine_failed"
