"""The transparent layer: a torch tensor subclass whose ops run on the backend, pipelined.

    net = dev.to_remote(net)             # parameters and buffers uploaded, module edited in place
    y = net(dev.tensor(x))               # every aten op is streamed to the backend, no reply awaited
    out = y.cpu()                        # a synchronising call: waits, raises any pending error

Shapes and dtypes come from running each op locally on the `meta` device, so the client never
waits to learn a shape. Ops are queued and coalesced into batches on one gRPC stream; an error on
the backend is reported at the next synchronising call (`.cpu()`, `.numpy()`, `.item()`,
`dev.synchronize()`), as with CUDA. Tensors freed on the client are released on the backend.

Convention: a RemoteTensor reports `device == meta` (its data lives remotely); plain CPU tensors
mixed into an op are sent along as constants. Limits: ops that change a tensor's metadata in
place (`resize_`, `transpose_`) are not mirrored locally; ops with data-dependent output shapes
(`nonzero`, `masked_select`) block once to learn the shape.
"""

from __future__ import annotations

import json
import weakref
from typing import Any

import torch
from torch.utils import _pytree as pytree

from gvirtus import codec
from gvirtus.allowlist import op_target
from gvirtus.errors import InvalidRequest
from gvirtus.opstream import OpStream
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.protocol import CLIENT_HANDLE_BASE, from_wire, to_wire, torch_dtype
from gvirtus.session_api import DeviceSession

aten = torch.ops.aten
META = torch.device("meta")


class RemoteTensor(torch.Tensor):
    """A tensor whose data lives on the backend. Shape/dtype/strides are real; device reads `meta`."""

    _gv_sig: tuple[Any, ...]    # ("R", dtype, shape, stride): the op-cache key part, computed once
    _gv_id: int
    _gv_pipe: OpStream

    @staticmethod
    def __new__(cls, shape: tuple[int, ...], stride: tuple[int, ...], dtype: torch.dtype, *, pipe: OpStream,
                hid: int) -> RemoteTensor:
        r = torch.Tensor._make_wrapper_subclass(cls, shape, strides=stride, dtype=dtype, device=META,
                                                requires_grad=False)
        r._gv_sig = ("R", dtype, shape, stride)
        r._gv_id = hid
        r._gv_pipe = pipe
        weakref.finalize(r, pipe.release, hid)
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]

    def __repr__(self, *, tensor_contents: Any = None) -> Any:  # type: ignore[override]
        return f"RemoteTensor(shape={list(self.shape)}, dtype={self.dtype}, id={self._gv_id - CLIENT_HANDLE_BASE})"

    def __setitem__(self, index: Any, value: Any) -> None:
        # torch would turn a Python number into a tensor on our (meta) device, which has no data;
        # a CPU scalar tensor travels with the op instead.
        if isinstance(value, bool | int | float):
            value = torch.tensor(value, dtype=self.dtype)
        super().__setitem__(index, value)

    def numpy(self, *, force: bool = False) -> Any:
        return self.cpu().numpy()

    def tolist(self) -> Any:
        return self.cpu().tolist()

    @classmethod
    def __torch_dispatch__(  # type: ignore[override]
            cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _dispatch(func, args, kwargs or {})


def fetch(t: RemoteTensor) -> torch.Tensor:
    """The tensor's data on the host (a synchronising call)."""
    reply = t._gv_pipe.sync(fetch=[t._gv_id])
    return from_wire(reply.fetched[0])


def upload(dev: DeviceSession, t: torch.Tensor) -> RemoteTensor:
    """A host tensor sent to the backend (queued, not awaited) as a RemoteTensor."""
    pipe = dev.op_stream()
    wire = to_wire(t)
    if len(wire.data) > dev.max_message_bytes // 2:
        raise InvalidRequest(f"tensor of {len(wire.data)} bytes is over half the {dev.max_message_bytes}-byte "
                             "message limit (gvirtus.max_message_mb); split it")
    hid = pipe.new_id()
    pipe.send(pb.PipelineItem(upload=pb.Upload(id=hid, tensor=wire)))
    return RemoteTensor(tuple(t.shape), t.contiguous().stride(), t.dtype, pipe=pipe, hid=hid)


def module_to_remote(module: torch.nn.Module, dev: DeviceSession) -> torch.nn.Module:
    """Replace every parameter and buffer of `module` by a RemoteTensor (in place, for inference)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None and not isinstance(p, RemoteTensor):
                m._parameters[name] = upload(dev, p.detach())  # type: ignore[assignment]
        for name, b in list(m._buffers.items()):
            if b is not None and not isinstance(b, RemoteTensor):
                m._buffers[name] = upload(dev, b)
    return module


def _pipe_of(remotes: list[RemoteTensor]) -> OpStream:
    pipe: OpStream | None = None
    for x in remotes:
        if pipe is None:
            pipe = x._gv_pipe
        elif x._gv_pipe is not pipe:
            raise InvalidRequest("an op mixes tensors of two remote sessions; move them to one device")
    if pipe is None:
        raise InvalidRequest("no remote tensor among the op's arguments")
    return pipe


class _UnhashableError(Exception):
    pass


def _signature(value: Any, remotes: list[RemoteTensor], plains: list[torch.Tensor]) -> Any:
    """A hashable description of an op argument (tensors by metadata); collects the tensors in order."""
    if isinstance(value, RemoteTensor):
        remotes.append(value)
        return value._gv_sig
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            raise InvalidRequest("a plain meta tensor has no data to send; create tensors on the cpu (they are "
                                 "uploaded with the op) or with dev.tensor()")
        plains.append(value)
        return ("T", value.dtype, tuple(value.shape), value.stride())
    if isinstance(value, list | tuple):
        return tuple(_signature(v, remotes, plains) for v in value)
    if value is None or isinstance(value, bool | int | float | str | torch.dtype | torch.device | torch.layout
                                   | torch.memory_format):
        return value
    raise _UnhashableError


class _OpRecipe:
    """What an op with a given argument signature needs, computed once: the JSON template of its
    arguments (remote ids filled in per call) and how to build its outputs from the meta result."""

    __slots__ = ("args_template", "out_spec", "outputs")

    def __init__(self, args_template: str, out_spec: pytree.TreeSpec | None, outputs: list[Any] | None) -> None:
        self.args_template = args_template
        self.out_spec = out_spec
        self.outputs = outputs      # ("alias", k) | ("new", shape, stride, dtype) | ("val", v); None: data-dependent


# (op, argument signature) -> _OpRecipe
_RECIPES: dict[Any, _OpRecipe] = {}
RECIPE_CACHE_MAX = 4096


def _args_template(args: Any, kwargs: dict[str, Any]) -> str:
    """The op's [args, kwargs] JSON; remote tensor k (in argument order) is {"r": k}, an index into Op.refs."""
    n_plain = iter(range(1 << 30))
    n_remote = iter(range(1 << 30))

    def ref(x: Any) -> dict[str, Any] | None:
        if isinstance(x, RemoteTensor):
            return {"r": next(n_remote)}
        if isinstance(x, torch.Tensor):
            return {"c": next(n_plain)}
        return None

    text = json.dumps(codec.encode_call(args, kwargs, ref), separators=(",", ":"))
    return text


def _recipe(func: Any, args: Any, kwargs: dict[str, Any], remotes: list[RemoteTensor]) -> _OpRecipe:
    template = _args_template(args, kwargs)
    metas: dict[int, torch.Tensor] = {}      # one fresh meta tensor per remote input (aliases are detected by identity)
    for r in remotes:
        if id(r) not in metas:
            metas[id(r)] = torch.empty_strided(r._gv_sig[2], r._gv_sig[3], dtype=r._gv_sig[1], device=META)
    position = {id(metas[id(r)]): k for k, r in enumerate(remotes)}

    def to_meta(x: Any) -> Any:
        if isinstance(x, RemoteTensor):
            return metas[id(x)]
        if isinstance(x, torch.Tensor):
            return x.to(META)
        return x

    margs, mkwargs = pytree.tree_map(to_meta, (args, kwargs))
    if "device" in mkwargs:
        mkwargs["device"] = META
    try:
        meta_out = func(*margs, **mkwargs)
    except NotImplementedError:     # no meta kernel: the output shape depends on the data
        return _OpRecipe(template, None, None)
    leaves, out_spec = pytree.tree_flatten(meta_out)
    outputs: list[Any] = []
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            k = position.get(id(leaf))
            outputs.append(("alias", k) if k is not None else ("new", tuple(leaf.shape), leaf.stride(), leaf.dtype))
        else:
            outputs.append(("val", leaf))
    return _OpRecipe(template, out_spec, outputs)


def _dispatch(func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    remotes: list[RemoteTensor] = []
    plains: list[torch.Tensor] = []
    try:
        key: Any = (func, _signature(args, remotes, plains),
                    tuple((k, _signature(v, remotes, plains)) for k, v in kwargs.items()))
    except _UnhashableError:
        key = None
        leaves = pytree.tree_leaves((args, kwargs))
        remotes = [x for x in leaves if isinstance(x, RemoteTensor)]
        plains = [x for x in leaves if isinstance(x, torch.Tensor) and not isinstance(x, RemoteTensor)]
    pipe = _pipe_of(remotes)
    special = _host_side(func, args, kwargs)
    if special is not _NOT_SPECIAL:
        return special
    recipe = _RECIPES.get(key) if key is not None else None
    if recipe is None:
        recipe = _recipe(func, args, kwargs, remotes)
        if key is not None and len(_RECIPES) < RECIPE_CACHE_MAX:
            _RECIPES[key] = recipe
    args_json = recipe.args_template
    refs = [r._gv_id for r in remotes]
    consts = [to_wire(t) for t in plains]
    target = op_target(func)
    if recipe.outputs is None or recipe.out_spec is None:
        return _blocking_op(pipe, target, args_json, consts, refs)
    ids: list[int] = []
    results: list[Any] = []
    for out in recipe.outputs:
        if out[0] == "alias":             # in-place op: the result is the input itself
            ids.append(0)
            results.append(remotes[out[1]])
        elif out[0] == "new":
            hid = pipe.new_id()
            ids.append(hid)
            results.append(RemoteTensor(out[1], out[2], out[3], pipe=pipe, hid=hid))
        else:
            results.append(out[1])
    pipe.send(pb.PipelineItem(op=pb.Op(target=target, args_json=args_json, outputs=ids, constants=consts, refs=refs)))
    return pytree.tree_unflatten(results, recipe.out_spec)


def _blocking_op(pipe: OpStream, target: str, args_json: str, consts: list[pb.Tensor],
                 refs: list[int]) -> RemoteTensor:
    """An op whose output shape depends on data: run it, then ask the backend for the shape."""
    hid = pipe.new_id()
    pipe.send(pb.PipelineItem(op=pb.Op(target=target, args_json=args_json, outputs=[hid], constants=consts,
                                       refs=refs)))
    spec = pipe.sync(describe=[hid]).described[0]
    shape = tuple(int(d) for d in spec.shape)
    dtype = torch_dtype(spec.dtype)
    return RemoteTensor(shape, torch.empty(shape, dtype=dtype, device=META).stride(), dtype, pipe=pipe, hid=hid)


_NOT_SPECIAL = object()


def _host_side(func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """Ops that bring data to the host (synchronising); `_NOT_SPECIAL` for every other op."""
    if func is aten._to_copy.default and isinstance(args[0], RemoteTensor):
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cpu":
            t = fetch(args[0])
            return t.to(dtype=kwargs.get("dtype") or t.dtype)
    if func is aten._local_scalar_dense.default:
        return fetch(args[0]).item()
    if func in (aten.copy_.default,) and not isinstance(args[0], RemoteTensor):
        return args[0].copy_(fetch(args[1]))
    if func in (aten.is_same_size.default,):
        return tuple(args[0].shape) == tuple(args[1].shape)
    return _NOT_SPECIAL
