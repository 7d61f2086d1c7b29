"""The try-on contract: every message of a try-on, in one place.

Owned by the VITON service (it serves it, the way a server owns its `.proto`); node 1's try-on
client, node 2's gateway and the VITON service all import it, and nothing re-spells it. It imports
numpy and nothing else heavy (no torch, no zmq), so the gateway and node 1 pay nothing for it.

Messages are transport frames (kind, request id, meta, tensors: see transport/frames.py):

    node 1 -> gateway
        tryon           the person tensors the configured engine READS (below); meta garment_id, and
                        optionally result_format "jpeg" + result_jpeg_quality (RESULT_FORMATS)
        garment         GARMENT_TENSORS (image, mask, landmarks); meta garment_id, kind (its category
                        follows from it: KIND_CATEGORY; the landmark rows are the category's)
        health          (no tensors)
    gateway -> node 1
        result          RESULT_TENSORS: image (result_format "raw", the default) or image_jpeg
                        ("jpeg": the JPEG file's bytes); meta timings_ms, engine, device
        error           meta code (ErrorCode), message
        need_garment    meta garment_id: send it once (kind garment), then repeat the try-on
        garment_stored  meta garment_id
        health          meta: the gateway's health document
    gateway -> VITON service
        tryon           the person tensors + garment_image, garment_mask, garment_landmarks;
                        meta garment_id, garment_kind, origin_id (and node 1's result_format keys)
        ping / health   (no tensors)
    VITON service -> gateway
        result / error  as above;  pong / health  meta: the service's health document

Person tensors (H, W the photo's size; all person tensors agree on it):

    person       uint8   (H, W, 3)  RGB photo as used for the try-on
    parse        uint8   (H, W)     CIHP-20 labels (0 background ... 13 face ... 19 right shoe)
    keypoints    float32 (25, 3)    OpenPose BODY_25 (x px, y px, confidence); missing = 0, 0, 0
    person_mask  uint8   (H, W)     person segmentation, 0..255 (only for an engine that reads it)
    person_jpeg  uint8   (n,)       instead of person: the shopper's JPEG file, when it decodes to exactly it

Garment categories: "top", "bottom" (trousers, shorts, skirt), "dress". The kind names the shape family
and KIND_CATEGORY its category (an unknown kind is a top); `landmarks` holds LANDMARK_ROWS[category]
rows (garments.types.landmark_names(category) names them). A bottom or a dress needs the legs in view:
without hips and a knee the service answers LEGS_NOT_IN_VIEW.

An engine declares the person tensors it reads (ENGINE_READS, and each engine class's `reads`);
node 1 sends exactly those. The pose picture VITON-HD reads is drawn on node 2 from `keypoints`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

CONTRACT_VERSION = 4  # 3: garment categories (landmark rows per category), legs_not_in_view; 4: result_format


class Kind(StrEnum):
    """Message kinds of the try-on protocol (frame.kind)."""

    TRYON = "tryon"
    GARMENT = "garment"
    HEALTH = "health"
    PING = "ping"
    PONG = "pong"
    RESULT = "result"
    ERROR = "error"
    NEED_GARMENT = "need_garment"
    GARMENT_STORED = "garment_stored"


class ErrorCode(StrEnum):
    """`meta.code` of an `error` reply. Node 1 maps these to its web errors (node1.tryon)."""

    MALFORMED_FRAME = "malformed_frame"        # undecodable frame
    FRAME_TOO_LARGE = "frame_too_large"
    UNKNOWN_KIND = "unknown_kind"
    BAD_REQUEST = "bad_request"                # tensors or meta off the contract (gateway)
    BAD_INPUT = "bad_input"                    # tensors off the contract (VITON service)
    MISSING_TENSOR = "missing_tensor"          # a tensor the engine reads is absent
    NO_POSE = "no_pose"                        # keypoints lack what the engine needs (e.g. a shoulder)
    LEGS_NOT_IN_VIEW = "legs_not_in_view"      # a bottom or a dress, on a photo without hips and knees
    BAD_GARMENT = "bad_garment"
    GARMENT_NOT_CACHED = "garment_not_cached"
    BUSY = "busy"                              # the VITON service's queue is full
    VITON_UNAVAILABLE = "viton_unavailable"    # the gateway cannot reach the VITON service
    VITON_TIMEOUT = "viton_timeout"
    VITON_ERROR = "viton_error"
    ENGINE_FAILED = "engine_failed"
    OUT_OF_MEMORY = "out_of_memory"
    PROTOCOL = "protocol"                      # an answer of the wrong kind


# How node 1 reads an error reply: the shopper's photo is the problem / node 2 is down / too slow.
NO_PERSON_CODES = frozenset({ErrorCode.NO_POSE})
LEGS_CODES = frozenset({ErrorCode.LEGS_NOT_IN_VIEW})
UNAVAILABLE_CODES = frozenset({ErrorCode.VITON_UNAVAILABLE, ErrorCode.BUSY})
TIMEOUT_CODES = frozenset({ErrorCode.VITON_TIMEOUT})


@dataclass(frozen=True)
class TensorSpec:
    """dtype and shape pattern: ints are fixed sizes, letters are sizes that must agree across the
    tensors of one message ("H", "W" for the person, "h", "w" for the garment)."""

    dtype: str
    shape: tuple[str | int, ...]
    doc: str


PERSON_TENSORS: dict[str, TensorSpec] = {
    "person": TensorSpec("uint8", ("H", "W", 3), "RGB photo"),
    "parse": TensorSpec("uint8", ("H", "W"), "CIHP-20 labels"),
    "keypoints": TensorSpec("float32", (25, 3), "BODY_25 (x px, y px, confidence)"),
    "person_mask": TensorSpec("uint8", ("H", "W"), "person segmentation 0..255"),
    "person_jpeg": TensorSpec("uint8", ("n",), "the photo as the shopper's JPEG file, instead of person"),
}
# `person` may travel as the shopper's own JPEG file instead (`person_jpeg`, ~17x fewer bytes) when its
# pixels are exactly what that file decodes to: the VITON service decodes it (PIL, as node 1 did) and
# checks it is H x W. Node 1 sends it only for a JPEG it did not rotate, convert or resize.
PERSON_AS_JPEG = "person_jpeg"
GARMENT_TENSORS: dict[str, TensorSpec] = {
    "image": TensorSpec("uint8", ("h", "w", 3), "RGB garment on a plain background"),
    "mask": TensorSpec("uint8", ("h", "w"), "255 = cloth"),
    "landmarks": TensorSpec("float32", ("n", 2), "garment landmarks (x, y) px; LANDMARK_ROWS[category] rows"),
}
GARMENT_CATEGORIES = ("top", "bottom", "dress")
# the shape families and their category (garments.types.KIND_CATEGORY holds the same table; a test checks)
KIND_CATEGORY: dict[str, str] = {
    "tshirt": "top", "longsleeve": "top", "tank": "top", "shirt": "top", "hoodie": "top",
    "trousers": "bottom", "shorts": "bottom", "skirt": "bottom",
    "dress": "dress",
}
LANDMARK_ROWS: dict[str, int] = {"top": 9, "bottom": 7, "dress": 11}
# The gateway forwards the garment to VITON under these names, beside the person tensors.
FORWARDED_GARMENT_NAMES = {"image": "garment_image", "mask": "garment_mask", "landmarks": "garment_landmarks"}
RESULT_TENSORS: dict[str, TensorSpec] = {
    "image": TensorSpec("uint8", ("H", "W", 3), "RGB photo of the shopper wearing the garment"),
    "image_jpeg": TensorSpec("uint8", ("n",), "the same as a baseline JPEG file (result_format jpeg)"),
}
# How node 1 wants the result: "raw" pixels (the default: the CLI, the live mirror's composite) or a
# "jpeg" file (the web app sends it to the shopper as it is: ~15x fewer bytes back over the link, and
# node 2 encodes it where the pixels are). Quality 1..95 as PIL's.
RESULT_FORMATS = ("raw", "jpeg")
RESULT_TENSOR = {"raw": "image", "jpeg": "image_jpeg"}
JPEG_QUALITY_RANGE = (1, 95)

# The person tensors each engine reads (its declaration; the engine classes' `reads` are these).
ENGINE_READS: dict[str, tuple[str, ...]] = {
    "geometric": ("person", "parse", "keypoints"),
    "vitonhd": ("person", "parse", "keypoints"),
}
NUM_CIHP_LABELS = 20
GARMENT_ID_HEX_CHARS = 64


class ContractError(ValueError):
    """A message breaks the contract. `code` is the ErrorCode to answer with; the message names the
    tensor (or meta key), what was expected and what arrived."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message)
        self.code = code


def reads_of(engine: str) -> tuple[str, ...]:
    """The person tensors `engine` reads. Raises ContractError for an unknown engine name."""
    try:
        return ENGINE_READS[engine]
    except KeyError:
        raise ContractError(f"no try-on engine {engine!r}; engines: {', '.join(ENGINE_READS)}",
                            ErrorCode.BAD_REQUEST) from None


def check_tensors(tensors: Mapping[str, object], specs: Mapping[str, TensorSpec], required: tuple[str, ...],
                  *, what: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
    """The one check of a message's tensors: `required` present, nothing outside `specs`, and each
    tensor's dtype and shape as specified, with letter sizes agreeing across tensors.

    Raises:
        ContractError: code MISSING_TENSOR naming the absent tensor(s); otherwise `code`, naming the
            tensor, the expected dtype/shape and what arrived.
    """
    missing = [n for n in required if n not in tensors]
    if missing:
        raise ContractError(f"{what} lacks tensor(s) {', '.join(missing)}; this engine reads "
                            f"{', '.join(required)}", ErrorCode.MISSING_TENSOR)
    extra = sorted(set(tensors) - set(specs))
    if extra:
        raise ContractError(f"{what} carries unknown tensor(s) {', '.join(extra)}; allowed: "
                            f"{', '.join(specs)}", code)
    sizes: dict[str, int] = {}
    for name in (n for n in specs if n in tensors):  # spec order: the photo fixes H and W first
        spec, arr = specs[name], tensors[name]
        if not isinstance(arr, np.ndarray):
            raise ContractError(f"{what}: tensor {name!r} must be a numpy array, got {type(arr).__name__}", code)
        ok = arr.dtype.name == spec.dtype and arr.ndim == len(spec.shape)
        want = tuple(d if isinstance(d, int) else sizes.get(d, d) for d in spec.shape)
        for dim, pattern in zip(arr.shape, spec.shape, strict=False):
            ok = ok and (dim == pattern if isinstance(pattern, int)
                         else (sizes.setdefault(pattern, dim) == dim and dim > 0))
        if not ok:
            shown = "(" + ", ".join(str(d) for d in want) + ")"
            raise ContractError(f"{what}: tensor {name!r} must be {spec.dtype} {shown}; got {arr.dtype.name} "
                                f"{tuple(arr.shape)}", code)


def check_person(tensors: Mapping[str, object], reads: tuple[str, ...], *, what: str = "tryon",
                 code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
    """Check a try-on's person tensors against the engine's `reads`, plus value ranges that cost
    little: parse labels < NUM_CIHP_LABELS, finite keypoints. `person` may come as PERSON_AS_JPEG
    (one or the other). Raises ContractError."""
    if PERSON_AS_JPEG in tensors:
        if "person" in tensors:
            raise ContractError(f"{what} carries both 'person' and {PERSON_AS_JPEG!r}; send one of them", code)
        if "person" not in reads:
            raise ContractError(f"{what} carries {PERSON_AS_JPEG!r}, but this engine does not read the photo "
                                f"(it reads {', '.join(reads)})", code)
        reads = tuple(PERSON_AS_JPEG if r == "person" else r for r in reads)
    check_tensors(tensors, PERSON_TENSORS, reads, what=what, code=code)
    parse = tensors.get("parse")
    if isinstance(parse, np.ndarray) and parse.size and int(parse.max()) >= NUM_CIHP_LABELS:
        raise ContractError(f"{what}: tensor 'parse' holds label {int(parse.max())}; CIHP labels are "
                            f"0..{NUM_CIHP_LABELS - 1}", code)
    kp = tensors.get("keypoints")
    if isinstance(kp, np.ndarray) and not np.isfinite(kp).all():
        raise ContractError(f"{what}: tensor 'keypoints' holds NaN or inf; missing points must be 0, 0, 0", code)


def viton_request(person: Mapping[str, object], garment_image: object, garment_mask: object,
                  garment_landmarks: object, *, garment_kind: str, garment_id: str, origin_id: str,
                  result: Mapping[str, object] | None = None) -> tuple[dict[str, object], dict[str, object]]:
    """The gateway -> VITON `tryon` message as (meta, tensors): the person tensors as node 1 sent
    them plus the garment under FORWARDED_GARMENT_NAMES, and node 1's result_format keys (`result`,
    checked by the caller: check_result_request). Built here, for the gateway and for node 1's
    in-process runner alike."""
    names = FORWARDED_GARMENT_NAMES
    tensors = {**person, names["image"]: garment_image, names["mask"]: garment_mask,
               names["landmarks"]: garment_landmarks}
    meta: dict[str, object] = {"garment_id": garment_id, "garment_kind": garment_kind, "origin_id": origin_id,
                               **(result or {})}
    return meta, tensors


def check_garment_id(garment_id: object) -> str:
    """A garment id is the sha256 hex of its content. Raises ContractError."""
    if (not isinstance(garment_id, str) or len(garment_id) != GARMENT_ID_HEX_CHARS
            or any(c not in "0123456789abcdef" for c in garment_id)):
        raise ContractError(f"garment_id must be a sha256 hex string ({GARMENT_ID_HEX_CHARS} lowercase hex "
                            f"chars), got {garment_id!r:.80}")
    return garment_id


def result_request(result_format: str = "raw", jpeg_quality: int | None = None) -> dict[str, object]:
    """The try-on meta keys asking for `result_format` (checked: check_result_request)."""
    meta: dict[str, object] = {} if result_format == "raw" else {"result_format": result_format}
    if jpeg_quality is not None:
        meta["result_jpeg_quality"] = jpeg_quality
    check_result_request(meta)
    return meta


def check_result_request(meta: Mapping[str, object], *, code: ErrorCode = ErrorCode.BAD_REQUEST
                         ) -> tuple[str, int | None]:
    """(result_format, jpeg quality or None) from a try-on's meta. Raises ContractError naming the key."""
    fmt = meta.get("result_format", "raw")
    if fmt not in RESULT_FORMATS:
        raise ContractError(f"meta result_format must be one of {', '.join(RESULT_FORMATS)}; got {fmt!r:.40}", code)
    quality = meta.get("result_jpeg_quality")
    if fmt == "raw":
        if quality is not None:
            raise ContractError("meta result_jpeg_quality is for result_format 'jpeg' only", code)
        return "raw", None
    lo, hi = JPEG_QUALITY_RANGE
    if not isinstance(quality, int) or isinstance(quality, bool) or not lo <= quality <= hi:
        raise ContractError(f"meta result_jpeg_quality must be an integer {lo}..{hi} with result_format 'jpeg'; "
                            f"got {quality!r:.40}", code)
    return "jpeg", quality


def check_garment_kind(kind: object) -> str:
    if not isinstance(kind, str) or not kind:
        raise ContractError(f"garment meta 'kind' must be a non-empty string, got {kind!r:.40}")
    return kind


def category_of(kind: str) -> str:
    """A garment kind's category ("top", "bottom", "dress"); an unknown kind is a top."""
    return KIND_CATEGORY.get(kind, "top")


def check_garment_landmarks(kind: str, landmarks: object, *, what: str = "garment",
                            code: ErrorCode = ErrorCode.BAD_REQUEST) -> str:
    """The landmarks' rows against the kind's category; returns the category. Raises ContractError."""
    category = category_of(kind)
    rows = LANDMARK_ROWS[category]
    shape = getattr(landmarks, "shape", None)
    if shape != (rows, 2):
        raise ContractError(f"{what}: a {category} ({kind!r}) has {rows} landmarks; tensor 'landmarks' must be "
                            f"float32 ({rows}, 2), got {shape}", code)
    return category


__all__ = [
    "CONTRACT_VERSION", "ENGINE_READS", "FORWARDED_GARMENT_NAMES", "GARMENT_CATEGORIES", "GARMENT_ID_HEX_CHARS",
    "GARMENT_TENSORS", "KIND_CATEGORY", "LANDMARK_ROWS", "LEGS_CODES", "NO_PERSON_CODES", "NUM_CIHP_LABELS",
    "PERSON_AS_JPEG", "PERSON_TENSORS", "RESULT_FORMATS", "RESULT_TENSOR", "RESULT_TENSORS", "TIMEOUT_CODES",
    "UNAVAILABLE_CODES", "ContractError", "ErrorCode", "Kind", "TensorSpec", "category_of", "check_garment_id",
    "check_garment_kind", "check_garment_landmarks", "check_person", "check_result_request", "check_tensors",
    "reads_of", "result_request", "viton_request",
]
