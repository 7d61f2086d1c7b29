"""The try-on errors node 1 reports to a shopper: one tree, each with a stable `code`.

The web app (`node1.web`) depends only on this module: a `TryOnRunner`, a `GarmentCatalog`
and the typed errors below. The real pipeline (preprocessing through gvirtus -> tensors over
the transport -> VITON) implements `TryOnRunner` and translates its components' exceptions
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
    │   │   └── LegsNotInView           a bottom or a dress, legs out of the photo   422 legs_not_in_view
    │   ├── BadGarment               an operator's garment image is unusable      422 bad_garment
    │   │   ├── GarmentShowsPerson       the "garment" photo shows a person           422 garment_shows_person
    │   │   ├── GarmentNameTooLong       the name is over the API's maxLength         422 garment_name_too_long
    │   │   ├── BadGarmentCategory       `category` is not top / bottom / dress       422 bad_garment_category
    │   │   └── GarmentCategoryMismatch  the photo is not a garment of that category  422 garment_category_mismatch
    │   ├── NotFound                 unknown or expired result / job / garment   404 not_found
    │   ├── ResultNotReady           the job has not finished yet                409 not_ready
    │   ├── NotAuthorized            operator API without a valid bearer token   401 unauthorized
    │   ├── OperatorApiDisabled      no operator token is configured             403 operator_disabled
    │   └── RateLimited              too many requests from this client          429 rate_limited
    └── ServiceError                 we could not do it (5xx)
        ├── Busy                     too many try-ons queued                     503 busy
        ├── Node2Unavailable         node 2 (gateway / VITON / gvirtus) is down  503 node2_unavailable
        ├── TryOnTimeout          the try-on took longer than the limit       504 timeout
        └── TryOnFailed           anything else inside the pipeline            500 pipeline_failed
"""

from __future__ import annotations


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


class LegsNotInView(NoPersonInPhoto):  # noqa: N818 (names say what went wrong)
    code = "legs_not_in_view"
    default_message = ("your legs are not in the photo: trousers, skirts and dresses need you in the picture "
                       "down to the knees at least; step back from the camera and try again (or pick a top)")


class BadGarment(BadRequest):
    code = "bad_garment"
    default_message = "the garment image cannot be prepared"


class GarmentShowsPerson(BadGarment):
    code = "garment_shows_person"
    default_message = ("the garment photo shows a person; upload a product photo of the garment alone, "
                       "flat on a plain background")


class GarmentNameTooLong(BadGarment):
    code = "garment_name_too_long"
    default_message = "the garment name is too long"


class BadGarmentCategory(BadGarment):
    code = "bad_garment_category"
    default_message = "the garment category must be 'top', 'bottom' or 'dress'"


class GarmentCategoryMismatch(BadGarment):
    code = "garment_category_mismatch"
    default_message = "the garment photo does not look like a garment of the category given"


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


class TryOnTimeout(ServiceError):  # noqa: N818 (names say what went wrong)
    code = "timeout"
    default_message = "the try-on took too long and was abandoned; try again"


class TryOnFailed(ServiceError):  # noqa: N818 (names say what went wrong)
    code = "pipeline_failed"
    default_message = "the try-on failed inside the pipeline"


__all__ = [
    "BadGarment", "BadGarmentCategory", "BadRequest", "Busy", "CorruptImage", "DecompressionBomb", "EmptyUpload",
    "GarmentCategoryMismatch", "GarmentNameTooLong", "GarmentShowsPerson", "ImageTooLarge", "LegsNotInView",
    "MissingField", "NoPersonInPhoto", "Node2Unavailable", "NotAuthorized", "NotFound", "OperatorApiDisabled",
    "RateLimited", "ResultNotReady", "ServiceError", "TryOnError", "TryOnFailed", "TryOnTimeout",
    "UnknownGarment", "UnsupportedImageType", "UploadError", "UploadTooLarge",
]
