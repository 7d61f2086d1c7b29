"""node1.tryon: the try-on orchestration, node 1's client of node 2.

Public face (what the web app and the CLI import):
    TryOnRunner, GarmentCatalog, TryOnResult, RunnerHealth, GarmentInfo, STAGES, ProgressFn,
    RESULT_JPEG_QUALITY
                                          the web app's interface (interface.py)
    the errors (errors.py): TryOnError and its tree, each with a stable `code`
    Runner                                the one request path (runner.py)
    build_distributed(cfg)                preprocessing through gvirtus, try-on over the transport
                                          (distributed.py; node1.web's default)
    build_in_process(cfg)                 the same path minus the wire (in_process.py)
    WebCatalog, open_catalog(cfg)         the garment catalog adapter (catalog.py)
    TryOnClient                           the transport client of node 2's gateway (node2_client.py)
Inside (imported by the runners, not by the web app): preprocess.py, pose + parsing as one device
program; fallback.py, FallbackDevice and its CircuitBreaker (remote gvirtus device first, local CPU).
Runners are built by "module:function" factories (node1.web.server.RUNNER_FACTORY), so the heavy
modules load only in the process that serves try-ons.
"""

from __future__ import annotations

from node1.tryon.errors import (
    BadGarment,
    BadRequest,
    Busy,
    CorruptImage,
    DecompressionBomb,
    EmptyUpload,
    GarmentNameTooLong,
    GarmentShowsPerson,
    ImageTooLarge,
    MissingField,
    Node2Unavailable,
    NoPersonInPhoto,
    NotAuthorized,
    NotFound,
    OperatorApiDisabled,
    RateLimited,
    ResultNotReady,
    ServiceError,
    TryOnError,
    TryOnFailed,
    TryOnTimeout,
    UnknownGarment,
    UnsupportedImageType,
    UploadError,
    UploadTooLarge,
)
from node1.tryon.interface import (
    RESULT_JPEG_QUALITY,
    STAGES,
    GarmentCatalog,
    GarmentInfo,
    ProgressFn,
    RunnerHealth,
    TryOnResult,
    TryOnRunner,
)

__all__ = [
    "RESULT_JPEG_QUALITY", "STAGES", "BadGarment", "BadRequest", "Busy", "CorruptImage", "DecompressionBomb",
    "EmptyUpload",
    "GarmentCatalog", "GarmentInfo", "GarmentNameTooLong", "GarmentShowsPerson",
    "ImageTooLarge", "MissingField", "NoPersonInPhoto", "Node2Unavailable",
    "NotAuthorized", "NotFound", "OperatorApiDisabled", "ProgressFn", "RateLimited", "ResultNotReady",
    "RunnerHealth", "ServiceError", "TryOnError", "TryOnFailed", "TryOnResult", "TryOnRunner", "TryOnTimeout",
    "UnknownGarment", "UnsupportedImageType", "UploadError", "UploadTooLarge",
]
