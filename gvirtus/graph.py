"""Modules as data: capture an nn.Module as an aten-level graph (client), compile and run it (backend).

The graph is JSON (never pickle, never TorchScript):

    {"format": "gvirtus.graph", "version": 1, "num_weights": W, "num_inputs": N,
     "nodes": [{"op": "aten::convolution.default", "args": [...], "kwargs": {...}}, ...],
     "outputs": [{"n": 7}, ...], "options": {"exact": true}}       (options: optional)

Arguments use `gvirtus.codec`: {"w": k} is weight k (parameters, buffers, then constants made in
forward), {"i": k} input k, {"n": j} the result of node j (earlier nodes only). Weights travel
separately as raw bytes; `content_hash` covers the JSON, the input specs and every weight's dtype, shape
and bytes.

Capture traces with `make_fx` at the example inputs' shapes, so a module is registered for those
shapes and dtypes; register again for other sizes (different content, a different graph).

A CPU backend lowers convolution chains to oneDNN fused calls (gvirtus.lowering: same values up to float
rounding, 1.5-2.6x faster); a module whose results must keep the plain aten arithmetic sets the attribute
``gvirtus_exact = True``, which capture records as the graph option "exact": such a graph is lowered by
the bit-exact rules instead (gvirtus.lowering.lower_exact: the same bits as unlowered, still faster).
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.fx.experimental.proxy_tensor import make_fx
from torch.utils import _pytree as pytree

from gvirtus import codec, lowering
from gvirtus.allowlist import GETITEM, op_target, resolve_op, writes_args
from gvirtus.errors import InvalidRequest, OpNotAllowed
from gvirtus.protocol import DTYPE_NAMES, dtype_name

# Every graph runs on one thread per process, like the kernels of one CUDA stream. On the CPU this is what
# keeps the backend fast: OpenMP gives each thread that enters a parallel region its own team, so graphs run
# on whichever gRPC / data-channel thread received the call made one spinning team per RPC thread, and with
# 2 torch threads on a 2-core VM the pose step took 2-3x longer than the same graphs run locally.
COMPUTE = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gvirtus-compute")

GRAPH_FORMAT = "gvirtus.graph"
GRAPH_VERSION = 1


@dataclass(frozen=True)
class Spec:
    """dtype (wire name) and shape of a tensor."""

    dtype: str
    shape: tuple[int, ...]

    @classmethod
    def of(cls, t: torch.Tensor) -> Spec:
        return cls(dtype_name(t.dtype), tuple(int(s) for s in t.shape))


@dataclass
class CapturedGraph:
    """A module captured on the client: graph JSON, weights (CPU, contiguous), specs, output structure."""

    graph_json: str
    weights: list[torch.Tensor]
    input_specs: list[Spec]
    output_specs: list[Spec]
    out_spec: pytree.TreeSpec
    content_hash: str = field(default="")
    output_consts: dict[int, Any] = field(default_factory=dict)   # non-tensor output leaves, by position
    num_outputs: int = 0

    def assemble(self, tensors: Sequence[Any]) -> Any:
        """The module's output structure from the graph's tensor outputs (constants re-inserted)."""
        it = iter(tensors)
        leaves = [self.output_consts[k] if k in self.output_consts else next(it) for k in range(self.num_outputs)]
        return pytree.tree_unflatten(leaves, self.out_spec)

    @property
    def weight_bytes(self) -> int:
        return sum(w.numel() * w.element_size() for w in self.weights)


def as_tensor(x: Any, what: str) -> torch.Tensor:
    """A host input (np.ndarray or torch.Tensor) as a CPU tensor; InvalidRequest otherwise."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    raise InvalidRequest(f"{what} must be a numpy array or a torch tensor, got {type(x).__name__}")


def capture(module: torch.nn.Module, example_inputs: Sequence[Any]) -> CapturedGraph:
    """Trace `module(*example_inputs)` to an aten graph with its weights as separate tensors.

    Args:
        module: any nn.Module whose forward takes tensors; traced in its current train/eval mode,
            under no_grad. Parameters and buffers become weights (never baked into the graph).
        example_inputs: np.ndarray / torch.Tensor, the shapes and dtypes every launch must use.
    """
    inputs = [as_tensor(x, f"example input {k}") for k, x in enumerate(example_inputs)]
    params = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    params = {k: v.detach() for k, v in params.items()}
    holder: dict[str, pytree.TreeSpec] = {}

    def run(p: dict[str, torch.Tensor], *args: torch.Tensor) -> list[Any]:
        out = torch.func.functional_call(module, p, args)
        leaves, holder["spec"] = pytree.tree_flatten(out)
        return leaves

    with torch.no_grad():
        gm = make_fx(run, tracing_mode="real")(params, *inputs)
        real_out = run(params, *inputs)
    weights = [t.contiguous() for t in params.values()]
    for t in weights:
        if t.dtype not in DTYPE_NAMES:
            raise InvalidRequest(f"a weight has dtype {t.dtype}, which the backend does not accept")
    refs: dict[torch.fx.Node, dict[str, int]] = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(weights) + len(inputs):
        raise InvalidRequest(f"traced graph has {len(placeholders)} inputs, expected "
                             f"{len(weights)} weights + {len(inputs)} inputs (non-tensor inputs are not supported)")
    for k, node in enumerate(placeholders):
        refs[node] = {"w": k} if k < len(weights) else {"i": k - len(weights)}
    nodes: list[dict[str, Any]] = []
    outputs: list[Any] = []
    leaves: list[Any] = []
    output_consts: dict[int, Any] = {}

    def ref(value: Any) -> dict[str, int] | None:
        return refs[value] if isinstance(value, torch.fx.Node) else None

    for node in gm.graph.nodes:
        if node.op == "get_attr":
            weights.append(getattr(gm, str(node.target)).detach().contiguous())
            refs[node] = {"w": len(weights) - 1}
        elif node.op == "call_function":
            if node.target is operator.getitem:
                target = GETITEM
            else:
                target = op_target(node.target)
                resolve_op(target)
            args, kwargs = codec.encode_call(node.args, dict(node.kwargs), ref)
            nodes.append({"op": target, "args": args, "kwargs": kwargs})
            refs[node] = {"n": len(nodes) - 1}
        elif node.op == "output":
            leaves = list(node.args[0])
            output_consts = {k: v for k, v in enumerate(leaves) if not isinstance(v, torch.fx.Node)}
            outputs = [refs[v] for v in leaves if isinstance(v, torch.fx.Node)]
        elif node.op != "placeholder":
            raise OpNotAllowed(f"graph node {node.format_node()} ({node.op}) cannot be sent to the backend")
    graph = {"format": GRAPH_FORMAT, "version": GRAPH_VERSION, "num_weights": len(weights),
             "num_inputs": len(inputs), "nodes": nodes, "outputs": outputs}
    if getattr(module, "gvirtus_exact", False):
        graph["options"] = {"exact": True}
    graph_json = json.dumps(graph, separators=(",", ":"))
    out_specs = [Spec.of(t) for t in real_out if isinstance(t, torch.Tensor)]
    cap = CapturedGraph(graph_json, weights, [Spec.of(t) for t in inputs], out_specs, holder["spec"],
                        output_consts=output_consts, num_outputs=len(leaves))
    cap.content_hash = content_hash(graph_json, weights, cap.input_specs)
    return cap


def content_hash(graph_json: str, weights: Sequence[torch.Tensor], input_specs: Sequence[Spec]) -> str:
    """sha256 over the graph JSON, the input specs and each weight's dtype, shape and raw bytes.

    The input specs count: a graph that names no shape (an elementwise op, a clone) registered for two input
    sizes is two modules, else the second size's launches would be checked against the first's specs."""
    h = hashlib.sha256(graph_json.encode())
    h.update(b"|inputs:" + repr([(sp.dtype, tuple(sp.shape)) for sp in input_specs]).encode())
    for w in weights:
        h.update(f"|{dtype_name(w.dtype)}{tuple(w.shape)}|".encode())
        if w.numel():
            h.update(w.contiguous().view(-1).view(torch.uint8).numpy().data)
    return "sha256:" + h.hexdigest()


class CompiledGraph:
    """A graph checked and ready to run on the backend (see the module docstring for the format).

    Checks at compile time: format and version, every op in the allowlist, every reference in
    range (nodes only see earlier nodes), no op writing in place into a weight (weights are shared
    between sessions that register the same content).
    """

    def __init__(self, graph_json: str, weights: list[torch.Tensor], input_specs: list[Spec],
                 device: torch.device) -> None:
        graph = codec.loads(graph_json, "module graph")   # typed, depth-bounded
        if not isinstance(graph, dict) or graph.get("format") != GRAPH_FORMAT or graph.get("version") != GRAPH_VERSION:
            raise InvalidRequest(f"module graph must have format {GRAPH_FORMAT!r} version {GRAPH_VERSION}")
        if graph.get("num_weights") != len(weights) or graph.get("num_inputs") != len(input_specs):
            raise InvalidRequest(f"module graph declares {graph.get('num_weights')} weights and "
                                 f"{graph.get('num_inputs')} inputs; got {len(weights)} and {len(input_specs)}")
        nodes = graph.get("nodes")
        if not isinstance(nodes, list):
            raise InvalidRequest("module graph has no node list")
        self.weights = weights
        self.input_specs = input_specs
        self.ops: list[Any] = []
        self.calls: list[tuple[list[Any], dict[str, Any]]] = []
        for j, node in enumerate(nodes):
            if not isinstance(node, dict) or not isinstance(node.get("op"), str):
                raise InvalidRequest(f"graph node {j} is malformed")
            args, kwargs = codec.decode_call([node.get("args"), node.get("kwargs")], device)
            self._check_refs([args, kwargs], j, f"node {j} ({node['op']})")
            if node["op"] == GETITEM:
                if len(args) != 2 or not isinstance(args[0], codec.Ref) or not isinstance(args[1], int):
                    raise InvalidRequest(f"graph node {j}: getitem takes (node, index)")
                self.ops.append(operator.getitem)
            else:
                op = resolve_op(node["op"])
                self._check_no_weight_writes(op, args, kwargs, j)
                self.ops.append(op)
            self.calls.append((args, kwargs))
        self.outputs = codec.decode(graph.get("outputs"), device)
        if not isinstance(self.outputs, list):
            raise InvalidRequest("module graph outputs must be a list")
        self._check_refs(self.outputs, len(nodes), "the outputs")
        options = graph.get("options", {})
        if not isinstance(options, dict) or not set(options) <= {"exact"}:
            raise InvalidRequest(f"module graph options must be a dict with keys from ['exact'], got {options!r}")
        self.lowered = 0
        exact = bool(options.get("exact"))
        if lowering.available(device, exact):
            lower = lowering.lower_exact if exact else lowering.lower_convolutions
            self.lowered = lower(self.ops, self.calls, self.outputs, self.weights)
        self.last_use = self._last_uses(len(nodes))
        self._steps = [_Step(op, *call) for op, call in zip(self.ops, self.calls, strict=True)]

    def _check_refs(self, value: Any, limit: int, where: str) -> None:
        bounds = {"w": len(self.weights), "i": len(self.input_specs), "n": limit}
        stack = [value]
        while stack:
            v = stack.pop()
            if isinstance(v, codec.Ref):
                if v.kind not in bounds or v.index >= bounds[v.kind]:
                    raise InvalidRequest(f"graph {where} refers to {v.kind}{v.index}, which does not exist there")
            elif isinstance(v, list):
                stack.extend(v)
            elif isinstance(v, dict):
                stack.extend(v.values())

    @staticmethod
    def _check_no_weight_writes(op: Any, args: list[Any], kwargs: dict[str, Any], j: int) -> None:
        schema_args = op._schema.arguments
        for pos in writes_args(op):
            name = schema_args[pos].name
            value = args[pos] if pos < len(args) else kwargs.get(name)
            if isinstance(value, codec.Ref) and value.kind == "w":
                raise OpNotAllowed(f"graph node {j} ({op}) writes in place into weight {value.index}; "
                                   "weights are read-only on the backend (trace in eval mode)")

    def _last_uses(self, n: int) -> list[list[int]]:
        last: dict[int, int] = {}
        for j, call in enumerate(self.calls):
            for i in codec.node_refs(list(call)):
                last[i] = j
        for i in codec.node_refs(self.outputs):
            last[i] = n
        free_after: list[list[int]] = [[] for _ in range(n)]
        for node, j in last.items():
            if j < n:
                free_after[j].append(node)
        return free_after

    def run(self, inputs: Sequence[torch.Tensor]) -> list[Any]:
        """Run on `inputs` (on the backend's device, matching `input_specs`); returns the flat outputs.

        Runs on the process's one compute thread (gvirtus.graph.COMPUTE), whichever RPC thread asks."""
        return COMPUTE.submit(self._run, inputs).result()

    def _run(self, inputs: Sequence[torch.Tensor]) -> list[Any]:
        env: list[Any] = [None] * len(self.ops)
        sources = {"n": env, "w": self.weights, "i": inputs}

        def lookup(r: codec.Ref) -> Any:
            return sources[r.kind][r.index]

        with torch.no_grad():
            for j, step in enumerate(self._steps):
                env[j] = step.run(sources, lookup)
                for dead in self.last_use[j]:
                    env[dead] = None
            outs = [codec.substitute(v, lookup) for v in self.outputs]
        if self.lowered:  # oneDNN's channels-last or blocked results leave as the graph was traced to return them
            outs = [lowering.leave(o) for o in outs]
        return outs


class _Step:
    """One node's call with its arguments bound ahead of time: templates plus the positions of the tensor
    references, so a launch fills in a few slots instead of walking every argument (the walk cost ~3 us a
    node: a 330-node graph ran ~1 ms slower on a CPU backend than the same module run locally)."""

    __slots__ = ("args", "arg_refs", "kwarg_refs", "kwargs", "nested", "op")

    def __init__(self, op: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.op = op
        self.args, self.kwargs = list(args), dict(kwargs)
        self.arg_refs = [(k, v.kind, v.index) for k, v in enumerate(self.args) if isinstance(v, codec.Ref)]
        self.kwarg_refs = [(k, v.kind, v.index) for k, v in self.kwargs.items() if isinstance(v, codec.Ref)]
        # lists holding references (e.g. the tensors of a cat): substituted whole at run time
        keyed: list[tuple[int | str, Any]] = [*enumerate(self.args), *self.kwargs.items()]
        self.nested = [(k, v) for k, v in keyed if not isinstance(v, codec.Ref) and codec.has_refs(v)]

    def run(self, sources: dict[str, Any], lookup: Any) -> Any:
        args, kwargs = self.args.copy(), self.kwargs.copy() if self.kwargs else self.kwargs
        for pos, kind, index in self.arg_refs:
            args[pos] = sources[kind][index]
        for name, kind, index in self.kwarg_refs:
            kwargs[name] = sources[kind][index]
        for key, value in self.nested:
            if isinstance(key, int):
                args[key] = codec.substitute(value, lookup)
            else:
                kwargs[key] = codec.substitute(value, lookup)
        return self.op(*args, **kwargs)
