"""Errors of pose estimation (and the face / person-mask helpers next to it).

    PoseError
    ├── NoPersonDetected     no person in the photo: the message is for the shopper
    ├── InvalidImage         not an RGB-convertible image, or too small (names the shape / value)
    └── DeviceUnavailable    neither the chosen device nor its fallback could run the models
"""

from __future__ import annotations


class PoseError(Exception):
    """Base of node1.pose's errors."""


class NoPersonDetected(PoseError):  # noqa: N818 - named after what went wrong (STYLE.md)
    """No person was found (detector below threshold, or the landmark model's presence gate failed)."""

    SHOPPER_MESSAGE = "no person detected — step into the frame"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(self.SHOPPER_MESSAGE + (f" ({detail})" if detail else ""))


class InvalidImage(PoseError):  # noqa: N818
    """The input is not an image we can use: wrong dtype/shape/channels, or shorter side under the minimum."""


class DeviceUnavailable(PoseError):  # noqa: N818
    """The requested device failed and no fallback could serve the call."""
