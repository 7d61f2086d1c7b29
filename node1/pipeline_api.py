"""The contract between node 1's web app and the try-on pipeline and garment catalog.

The web app (`node1.webapp`) depends only on this module: a `TryOnPipeline`, a `GarmentCatalog`
and the typed errors below. The real pipeline (preprocessing through gvirtus -> tensors over
the transport -> VITON) implements `TryOnPipeline` and translates its components' exceptions
into these errors at its boundary (`raise NoPersonInPhoto(...) from exc`).

Errors (each carries a stable `code`; the HTTP status of every one is in `HTTP_STATUS`, the one
place where errors meet status codes):

    TryOnError                       base; message says what went wrong and how to fix it
    ├── BadRequest                   the client sent something we cannot use (4xx)
    │   ├── UploadError              the uploaded photo/garment image
    │   │   ├── EmptyUpload              0 bytes                                 400 empty_upload
    │   │   ├── UploadTooLarge           over limits.upload_max_mb               413 upload_too_large
    │   │   ├── UnsupportedImageType     not JPEG / PNG / WebP                   415 unsupported_image_type
    │   │   ├── CorruptImage             truncated or undecodable                400 corrupt_image
    │   │   ├── ImageTooLarge            a side over limits.image_max_side       422 image_too_large
    │   │   └── DecompressionBomb        pixel count far beyond the limits       422 decompression_bomb
    │   ├── MissingField             a required form field is absent             400 missing_field
    │   ├── UnknownGarment           no such garment id in the catalog           422 unknown_garment
    │   ├── NoPersonInPhoto         nobody in the photo                         422 no_person
    │   ├── BadGarment               an operator's garment image is unusable      422 bad_garment
    │   ├── NotFound                 unknown or expired result / job / garment   404 not_found
    │   ├── ResultNotReady           the job has not finished yet                409 not_ready
    │   ├── NotAuthorized            operator API without a valid bearer token   401 unauthorized
    │   ├── OperatorApiDisabled      no operator token is configured             403 operator_disabled
    │   └── RateLimited              too many requests from this client          429 rate_limited
    └── ServiceError                 we could not do it (5xx)
        ├── Busy                     too many try-ons queued                     503 busy
        ├── Node2Unavailable         node 2 (gateway / VITON / gvirtus) is down  503 node2_unavailable
        ├── PipelineTimeout          the try-on took longer than the limit       504 timeout
        └── PipelineFailed           anything else inside the pipeline            500 pipeline_failed
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# Progress stages the pipeline reports, in order. The page shows one step per stage.
STAGES: tuple[str, ...] = ("pose", "parsing", "transfer", "tryon")

ProgressFn = Callable[[str], None]


# ----------------------------------------------------------------------------- errors
class TryOnError(Exception):
    """Base of every error the web app turns into a JSON error response.

    Attributes:
        code: stable machine-readable name (the JSON `error.code`).
        message: readable text (the JSON `error.message`): what went wrong, how to fix it.
    """

    code = "internal"
    default_message = "the try-on failed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class BadRequest(TryOnError):  # noqa: N818 (names say what went wrong)
    code = "bad_request"
    default_message = "the request could not be used"


class UploadError(BadRequest):
    code = "bad_upload"
    default_message = "the uploaded image could not be used"


class EmptyUpload(UploadError):  # noqa: N818 (names say what went wrong)
    code = "empty_upload"
    default_message = "the uploaded file is empty (0 bytes); choose a JPEG, PNG or WebP photo"


class UploadTooLarge(UploadError):  # noqa: N818 (names say what went wrong)
    code = "upload_too_large"
    default_message = "the upload is larger than the server accepts"


class UnsupportedImageType(UploadError):  # noqa: N818 (names say what went wrong)
    code = "unsupported_image_type"
    default_message = "the upload is not a JPEG, PNG or WebP image"


class CorruptImage(UploadError):  # noqa: N818 (names say what went wrong)
    code = "corrupt_image"
    default_message = "the image is truncated or damaged and cannot be decoded"


class ImageTooLarge(UploadError):  # noqa: N818 (names say what went wrong)
    code = "image_too_large"
    default_message = "the image is too large"


class DecompressionBomb(UploadError):  # noqa: N818 (names say what went wrong)
    code = "decompression_bomb"
    default_message = "the image decompresses to far more pixels than allowed"


class MissingField(BadRequest):
    code = "missing_field"
    default_message = "a required form field is missing"


class UnknownGarment(BadRequest):
    code = "unknown_garment"
    default_message = "no garment with this id in the catalog"


class NoPersonInPhoto(BadRequest):
    code = "no_person"
    default_message = ("no person found in the photo: stand facing the camera with your head, "
                       "shoulders and upper body in the picture, and try again")


class BadGarment(BadRequest):
    code = "bad_garment"
    default_message = "the garment image cannot be prepared"


class NotFound(BadRequest):
    code = "not_found"
    default_message = "no such item (it may have expired)"


class ResultNotReady(BadRequest):
    code = "not_ready"
    default_message = "the try-on has not finished yet; follow its events_url or retry shortly"


class NotAuthorized(BadRequest):
    code = "unauthorized"
    default_message = "operator API: send 'Authorization: Bearer <token>' with the operator token"


class OperatorApiDisabled(BadRequest):
    code = "operator_disabled"
    default_message = ("the operator API is disabled: set node1.operator_token_file in env_config.json "
                       "(or VM_OPERATOR_TOKEN)")


class RateLimited(BadRequest):
    code = "rate_limited"
    default_message = "too many requests from this client; wait a little and try again"

    def __init__(self, message: str | None = None, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ServiceError(TryOnError):
    code = "service_error"
    default_message = "the service could not complete the request"


class Busy(ServiceError):  # noqa: N818 (names say what went wrong)
    code = "busy"
    default_message = "the mirror is busy with other shoppers; try again in a few seconds"


class Node2Unavailable(ServiceError):  # noqa: N818 (names say what went wrong)
    code = "node2_unavailable"
    default_message = ("the try-on server (node 2) cannot be reached right now; "
                       "try again in a moment (operators: check the gateway and VITON service)")


class PipelineTimeout(ServiceError):  # noqa: N818 (names say what went wrong)
    code = "timeout"
    default_message = "the try-on took too long and was abandoned; try again"


class PipelineFailed(ServiceError):  # noqa: N818 (names say what went wrong)
    code = "pipeline_failed"
    default_message = "the try-on failed inside the pipeline"


# The one place where error types meet HTTP status codes. Looked up along the MRO, so a
# subclass the pipeline defines inherits its parent's status. tests/web check it is complete.
HTTP_STATUS: dict[type[TryOnError], int] = {
    TryOnError: 500,
    BadRequest: 400,
    UploadError: 400,
    EmptyUpload: 400,
    UploadTooLarge: 413,
    UnsupportedImageType: 415,
    CorruptImage: 400,
    ImageTooLarge: 422,
    DecompressionBomb: 422,
    MissingField: 400,
    UnknownGarment: 422,
    NoPersonInPhoto: 422,
    BadGarment: 422,
    NotFound: 404,
    ResultNotReady: 409,
    NotAuthorized: 401,
    OperatorApiDisabled: 403,
    RateLimited: 429,
    ServiceError: 503,
    Busy: 503,
    Node2Unavailable: 503,
    PipelineTimeout: 504,
    PipelineFailed: 500,
}


def http_status(exc: TryOnError) -> int:
    """The HTTP status for `exc` (nearest class in its MRO listed in `HTTP_STATUS`)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_body(exc: TryOnError) -> dict[str, Any]:
    """The JSON error document: {"error": {"code", "message"}}."""
    return {"error": {"code": exc.code, "message": exc.message}}


# ----------------------------------------------------------------------------- pipeline
@dataclass(frozen=True)
class PipelineResult:
    """What one try-on produced.

    Attributes:
        image: (H, W, 3) uint8 RGB, the shopper wearing the garment (any size; usually the
            photo's size or 768x1024).
        timings_ms: wall time per stage in milliseconds, keys from STAGES (others allowed).
        device: where preprocessing ran, e.g. "cuda:0 (gvirtus)" or "cpu (local fallback)".
        transport: how tensors reached VITON: "rdma", "tcp", "inproc".
        gvirtus_calls: remote CUDA calls this request made (feeds gvirtus_calls_total).
        transport_bytes: bytes sent + received over the transport (feeds transport_bytes_total).
    """

    image: np.ndarray
    timings_ms: dict[str, float]
    device: str
    transport: str
    gvirtus_calls: int = 0
    transport_bytes: int = 0


@dataclass(frozen=True)
class PipelineHealth:
    """The pipeline's part of GET /health. `health()` must answer fast (cache probes).

    Attributes:
        models_loaded: names of the loaded models, e.g. ["pose_landmark_full", "geometric"].
        transport: transport in use ("rdma", "tcp", "inproc").
        node2_reachable: the gateway / VITON service answered its last probe.
        gpu: {"name", "memory_used_mb", "memory_total_mb", "temperature_c"} when known
            (temperature may be None), else None.
        details: anything else worth showing (gvirtus session, fallback state, ...).
    """

    models_loaded: list[str]
    transport: str
    node2_reachable: bool
    gpu: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class TryOnPipeline(Protocol):
    """Dresses a photo in a catalog garment. Must be safe to call from several threads."""

    def run(self, photo: np.ndarray, garment_id: str, progress: ProgressFn) -> PipelineResult:
        """Try the garment on the person in the photo.

        Args:
            photo: (H, W, 3) uint8 RGB, EXIF orientation already applied, sides <= image_max_side.
            garment_id: a catalog id (the web app checked it exists).
            progress: call with each stage name of STAGES as the stage *starts*.

        Raises:
            NoPersonInPhoto, UnknownGarment, Node2Unavailable, PipelineTimeout, PipelineFailed
            (or another TryOnError). Any other exception is reported as PipelineFailed.
        """
        ...

    def health(self) -> PipelineHealth:
        ...


# ----------------------------------------------------------------------------- catalog
@dataclass(frozen=True)
class GarmentInfo:
    """A catalog entry as the web app shows it."""

    id: str
    name: str


@runtime_checkable
class GarmentCatalog(Protocol):
    """The garments a shopper can pick. Must be safe to call from several threads."""

    def list(self) -> list[GarmentInfo]:
        ...

    def get(self, garment_id: str) -> GarmentInfo:
        """Raises UnknownGarment."""
        ...

    def thumbnail(self, garment_id: str) -> tuple[bytes, str]:
        """(encoded image bytes, MIME type) of a small preview. Raises UnknownGarment."""
        ...

    def add(self, data: bytes, name: str) -> GarmentInfo:
        """Prepare and store an operator's garment photo: the uploaded JPEG/PNG/WebP bytes (already
        checked by node1.imageio; PNG/WebP alpha may carry the cloth mask). Raises BadGarment."""
        ...


__all__ = [
    "HTTP_STATUS", "STAGES", "BadGarment", "BadRequest", "Busy", "CorruptImage", "DecompressionBomb",
    "EmptyUpload", "GarmentCatalog", "GarmentInfo", "ImageTooLarge", "MissingField", "NoPersonInPhoto",
    "Node2Unavailable", "NotAuthorized", "NotFound", "OperatorApiDisabled", "PipelineFailed",
    "PipelineHealth", "PipelineResult", "PipelineTimeout", "ProgressFn", "RateLimited", "ResultNotReady",
    "ServiceError", "TryOnError", "TryOnPipeline", "UnknownGarment", "UnsupportedImageType",
    "UploadError", "UploadTooLarge", "error_body", "http_status",
]
