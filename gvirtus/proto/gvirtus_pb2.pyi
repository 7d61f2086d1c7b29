from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TensorSpec(_message.Message):
    __slots__ = ("dtype", "shape")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class OpenRequest(_message.Message):
    __slots__ = ("token", "protocol_version", "client")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    token: str
    protocol_version: int
    client: str
    def __init__(self, token: _Optional[str] = ..., protocol_version: _Optional[int] = ..., client: _Optional[str] = ...) -> None: ...

class DeviceProperties(_message.Message):
    __slots__ = ("name", "device_type", "device", "total_memory", "free_memory", "capability", "torch_version", "session_bytes_in_use", "session_quota_bytes", "multiprocessors")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MEMORY_FIELD_NUMBER: _ClassVar[int]
    FREE_MEMORY_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    TORCH_VERSION_FIELD_NUMBER: _ClassVar[int]
    SESSION_BYTES_IN_USE_FIELD_NUMBER: _ClassVar[int]
    SESSION_QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    MULTIPROCESSORS_FIELD_NUMBER: _ClassVar[int]
    name: str
    device_type: str
    device: str
    total_memory: int
    free_memory: int
    capability: str
    torch_version: str
    session_bytes_in_use: int
    session_quota_bytes: int
    multiprocessors: int
    def __init__(self, name: _Optional[str] = ..., device_type: _Optional[str] = ..., device: _Optional[str] = ..., total_memory: _Optional[int] = ..., free_memory: _Optional[int] = ..., capability: _Optional[str] = ..., torch_version: _Optional[str] = ..., session_bytes_in_use: _Optional[int] = ..., session_quota_bytes: _Optional[int] = ..., multiprocessors: _Optional[int] = ...) -> None: ...

class OpenReply(_message.Message):
    __slots__ = ("session_id", "heartbeat_interval_s", "session_timeout_s", "properties", "max_message_bytes", "protocol_version", "data_port")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    SESSION_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATA_PORT_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    heartbeat_interval_s: float
    session_timeout_s: float
    properties: DeviceProperties
    max_message_bytes: int
    protocol_version: int
    data_port: int
    def __init__(self, session_id: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., session_timeout_s: _Optional[float] = ..., properties: _Optional[_Union[DeviceProperties, _Mapping]] = ..., max_message_bytes: _Optional[int] = ..., protocol_version: _Optional[int] = ..., data_port: _Optional[int] = ...) -> None: ...

class BackendStats(_message.Message):
    __slots__ = ("sessions", "session_bytes", "modules", "module_bytes", "device_allocated")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    SESSION_BYTES_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    MODULE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    sessions: int
    session_bytes: int
    modules: int
    module_bytes: int
    device_allocated: int
    def __init__(self, sessions: _Optional[int] = ..., session_bytes: _Optional[int] = ..., modules: _Optional[int] = ..., module_bytes: _Optional[int] = ..., device_allocated: _Optional[int] = ...) -> None: ...

class MallocRequest(_message.Message):
    __slots__ = ("nbytes",)
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    nbytes: int
    def __init__(self, nbytes: _Optional[int] = ...) -> None: ...

class Handle(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class BufferInfo(_message.Message):
    __slots__ = ("id", "nbytes", "dtype", "shape")
    ID_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    id: int
    nbytes: int
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, id: _Optional[int] = ..., nbytes: _Optional[int] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ...) -> None: ...

class CopyChunk(_message.Message):
    __slots__ = ("handle", "offset", "data")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    handle: int
    offset: int
    data: bytes
    def __init__(self, handle: _Optional[int] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("handle", "offset", "nbytes")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    handle: int
    offset: int
    nbytes: int
    def __init__(self, handle: _Optional[int] = ..., offset: _Optional[int] = ..., nbytes: _Optional[int] = ...) -> None: ...

class DataChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class DtoDRequest(_message.Message):
    __slots__ = ("dst", "src", "nbytes", "dst_offset", "src_offset")
    DST_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    DST_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SRC_OFFSET_FIELD_NUMBER: _ClassVar[int]
    dst: int
    src: int
    nbytes: int
    dst_offset: int
    src_offset: int
    def __init__(self, dst: _Optional[int] = ..., src: _Optional[int] = ..., nbytes: _Optional[int] = ..., dst_offset: _Optional[int] = ..., src_offset: _Optional[int] = ...) -> None: ...

class MemsetRequest(_message.Message):
    __slots__ = ("handle", "value", "offset", "nbytes")
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    NBYTES_FIELD_NUMBER: _ClassVar[int]
    handle: int
    value: int
    offset: int
    nbytes: int
    def __init__(self, handle: _Optional[int] = ..., value: _Optional[int] = ..., offset: _Optional[int] = ..., nbytes: _Optional[int] = ...) -> None: ...

class ModuleHeader(_message.Message):
    __slots__ = ("content_hash", "graph_json", "weights", "inputs")
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    GRAPH_JSON_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    content_hash: str
    graph_json: str
    weights: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    inputs: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    def __init__(self, content_hash: _Optional[str] = ..., graph_json: _Optional[str] = ..., weights: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ..., inputs: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ...) -> None: ...

class ModuleChunk(_message.Message):
    __slots__ = ("header", "weight_data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DATA_FIELD_NUMBER: _ClassVar[int]
    header: ModuleHeader
    weight_data: bytes
    def __init__(self, header: _Optional[_Union[ModuleHeader, _Mapping]] = ..., weight_data: _Optional[bytes] = ...) -> None: ...

class LookupRequest(_message.Message):
    __slots__ = ("content_hash",)
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    content_hash: str
    def __init__(self, content_hash: _Optional[str] = ...) -> None: ...

class ModuleInfo(_message.Message):
    __slots__ = ("found", "module_id")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    found: bool
    module_id: int
    def __init__(self, found: _Optional[bool] = ..., module_id: _Optional[int] = ...) -> None: ...

class LaunchInput(_message.Message):
    __slots__ = ("host", "handle")
    HOST_FIELD_NUMBER: _ClassVar[int]
    HANDLE_FIELD_NUMBER: _ClassVar[int]
    host: Tensor
    handle: int
    def __init__(self, host: _Optional[_Union[Tensor, _Mapping]] = ..., handle: _Optional[int] = ...) -> None: ...

class LaunchRequest(_message.Message):
    __slots__ = ("module_id", "inputs", "keep_on_device")
    MODULE_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    KEEP_ON_DEVICE_FIELD_NUMBER: _ClassVar[int]
    module_id: int
    inputs: _containers.RepeatedCompositeFieldContainer[LaunchInput]
    keep_on_device: bool
    def __init__(self, module_id: _Optional[int] = ..., inputs: _Optional[_Iterable[_Union[LaunchInput, _Mapping]]] = ..., keep_on_device: _Optional[bool] = ...) -> None: ...

class LaunchOutput(_message.Message):
    __slots__ = ("host", "device")
    HOST_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    host: Tensor
    device: BufferInfo
    def __init__(self, host: _Optional[_Union[Tensor, _Mapping]] = ..., device: _Optional[_Union[BufferInfo, _Mapping]] = ...) -> None: ...

class LaunchReply(_message.Message):
    __slots__ = ("outputs",)
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    outputs: _containers.RepeatedCompositeFieldContainer[LaunchOutput]
    def __init__(self, outputs: _Optional[_Iterable[_Union[LaunchOutput, _Mapping]]] = ...) -> None: ...

class Op(_message.Message):
    __slots__ = ("target", "args_json", "outputs", "constants", "refs")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    CONSTANTS_FIELD_NUMBER: _ClassVar[int]
    REFS_FIELD_NUMBER: _ClassVar[int]
    target: str
    args_json: str
    outputs: _containers.RepeatedScalarFieldContainer[int]
    constants: _containers.RepeatedCompositeFieldContainer[Tensor]
    refs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, target: _Optional[str] = ..., args_json: _Optional[str] = ..., outputs: _Optional[_Iterable[int]] = ..., constants: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., refs: _Optional[_Iterable[int]] = ...) -> None: ...

class Upload(_message.Message):
    __slots__ = ("id", "tensor")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    id: int
    tensor: Tensor
    def __init__(self, id: _Optional[int] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, ids: _Optional[_Iterable[int]] = ...) -> None: ...

class Sync(_message.Message):
    __slots__ = ("seq", "fetch", "describe")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    FETCH_FIELD_NUMBER: _ClassVar[int]
    DESCRIBE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    fetch: _containers.RepeatedScalarFieldContainer[int]
    describe: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, seq: _Optional[int] = ..., fetch: _Optional[_Iterable[int]] = ..., describe: _Optional[_Iterable[int]] = ...) -> None: ...

class PipelineItem(_message.Message):
    __slots__ = ("op", "upload", "release", "sync")
    OP_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    op: Op
    upload: Upload
    release: Release
    sync: Sync
    def __init__(self, op: _Optional[_Union[Op, _Mapping]] = ..., upload: _Optional[_Union[Upload, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ..., sync: _Optional[_Union[Sync, _Mapping]] = ...) -> None: ...

class PipelineBatch(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PipelineItem]
    def __init__(self, items: _Optional[_Iterable[_Union[PipelineItem, _Mapping]]] = ...) -> None: ...

class SyncReply(_message.Message):
    __slots__ = ("seq", "error_kind", "error", "fetched", "described")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ERROR_KIND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FETCHED_FIELD_NUMBER: _ClassVar[int]
    DESCRIBED_FIELD_NUMBER: _ClassVar[int]
    seq: int
    error_kind: str
    error: str
    fetched: _containers.RepeatedCompositeFieldContainer[Tensor]
    described: _containers.RepeatedCompositeFieldContainer[TensorSpec]
    def __init__(self, seq: _Optional[int] = ..., error_kind: _Optional[str] = ..., error: _Optional[str] = ..., fetched: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., described: _Optional[_Iterable[_Union[TensorSpec, _Mapping]]] = ...) -> None: ...
