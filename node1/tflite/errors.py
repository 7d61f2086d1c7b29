"""Errors of the TFLite -> torch loader.

    TFLiteError
    ├── ModelFormatError   the file is not a TFLite flatbuffer we can read (names the file and what is wrong)
    └── UnsupportedOp      the model uses an op (or an op option) the loader does not implement (names op and model)
"""

from __future__ import annotations


class TFLiteError(Exception):
    """Base of the loader's errors."""


class ModelFormatError(TFLiteError):
    """The file is not a readable single-subgraph TFLite model."""


class UnsupportedOp(TFLiteError):  # noqa: N818 - named after what went wrong (STYLE.md)
    """An op or op option the loader does not implement.

    Attributes:
        op: the TFLite op name (e.g. ``"FULLY_CONNECTED"`` or ``"CUSTOM:MyOp"``).
        model: the model name the op was found in.
    """

    def __init__(self, op: str, model: str, detail: str = "") -> None:
        self.op = op
        self.model = model
        msg = f"TFLite op {op} in model {model!r} is not supported by node1.tflite"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg + "; supported ops: see node1.tflite.SUPPORTED_OPS")
