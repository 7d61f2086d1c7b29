"""Parity of the torch modules built by node1.tflite against LiteRT, on random and real inputs.

Criterion (issue 4): per output, max |torch - LiteRT| <= 1e-4 x that output's range over the inputs
tried; segmentation logits are compared after the sigmoid.

One measured exception: pose_landmark_full's segmentation logits reach -1650 and come out of large
cancelling sums, so fp32 summation order alone moves a few near-zero logits by ~0.5. LiteRT does not
agree with itself there: its XNNPACK path and its builtin reference kernels differ by up to 2.7e-3 after
the sigmoid (27x the 1e-4 budget). For that output we therefore compare against LiteRT's reference
kernels and require our error to be no larger than max(1e-4 x range, LiteRT XNNPACK-vs-reference
error) on the same inputs, plus 99.8% of pixels within 1e-4. Every other output meets 1e-4 x range
against the default (XNNPACK) interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mirror import model_path
from node1.tflite import load_model
from node1.tflite.cpu import optimize_for_cpu

ai_edge_litert = pytest.importorskip("ai_edge_litert.interpreter", reason="ai-edge-litert (dev dependency) missing")

REL_TOL = 1e-4
# model -> (input value range, names of outputs that are logits to compare after a sigmoid)
MODELS = {
    "pose_detection.tflite": ((-1.0, 1.0), set()),
    "pose_landmark_full.tflite": ((0.0, 1.0), {"Identity_2"}),  # segmentation logits
    "selfie_segmentation.tflite": ((0.0, 1.0), set()),
    "face_detection_short_range.tflite": ((-1.0, 1.0), set()),
    "face_landmark.tflite": ((0.0, 1.0), set()),
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z.astype(np.float64)))


def _run_litert(name: str, xs: list[np.ndarray], reference_kernels: bool = False) -> list[np.ndarray]:
    """Outputs of LiteRT for each input, concatenated over the batch, in graph output order."""
    kw = {}
    if reference_kernels:
        kw["experimental_op_resolver_type"] = ai_edge_litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = ai_edge_litert.Interpreter(model_path=str(model_path(name)), num_threads=2, **kw)
    interp.allocate_tensors()
    in_det, out_dets = interp.get_input_details()[0], interp.get_output_details()
    refs: list[list[np.ndarray]] = []
    for x in xs:
        interp.set_tensor(in_det["index"], x)
        interp.invoke()
        refs.append([interp.get_tensor(d["index"]).copy() for d in out_dets])
    return [np.concatenate([r[k] for r in refs]) for k in range(len(out_dets))]


def _inputs(size: int, lo: float, hi: float, photos: list[np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    xs = [rng.uniform(lo, hi, (1, size, size, 3)).astype(np.float32)]
    for img in photos:  # real photos: resized to the model input, scaled to its value range
        t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        xs.append((lo + (hi - lo) * t.clamp(0, 255) / 255).permute(0, 2, 3, 1).contiguous().numpy())
    return xs


_REFS: dict[str, tuple[list[np.ndarray], list[np.ndarray], list[str]]] = {}
_EXACT: dict[str, list[np.ndarray]] = {}  # LiteRT builtin reference kernels (slow: computed once)


def _case(name: str, photos: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """(inputs, LiteRT outputs, output names) for a model, computed once per session."""
    if name not in _REFS:
        (lo, hi), _ = MODELS[name]
        interp = ai_edge_litert.Interpreter(model_path=str(model_path(name)))
        out_names = [d["name"] for d in interp.get_output_details()]
        size = int(interp.get_input_details()[0]["shape"][1])
        xs = _inputs(size, lo, hi, photos)
        _REFS[name] = (xs, _run_litert(name, xs), out_names)
    return _REFS[name]


@pytest.mark.parametrize("variant", ["portable", "cpu_fast"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_matches_litert(name: str, variant: str, astronaut: np.ndarray, camera_rgb: np.ndarray) -> None:
    """Both the portable module and its CPU lowering (node1.tflite.cpu) meet the parity criterion."""
    _, logit_outputs = MODELS[name]
    xs, refs, out_names = _case(name, [astronaut, camera_rgb, np.ascontiguousarray(astronaut[:, ::-1])])
    module = load_model(name, layout="nchw")
    assert module.output_names == out_names
    batch = torch.from_numpy(np.concatenate(xs)).permute(0, 3, 1, 2).contiguous()
    if variant == "cpu_fast":
        if name == "face_landmark.tflite":
            pytest.skip("face_landmark is not run through the CPU lowering by the project")
        fast = optimize_for_cpu(module, batch[:1])
        assert fast is not module, "the CPU lowering fell back to the portable module"
        module = fast
    with torch.inference_mode():
        got = [g.permute(0, 2, 3, 1) if g.dim() == 4 else g for g in module(batch)]  # the module batches
    for k, out_name in enumerate(out_names):
        ref, ours = refs[k], got[k].numpy()
        assert ours.shape == ref.shape, out_name
        if out_name in logit_outputs:
            _check_segmentation(name, xs, k, ours)
            continue
        span = float(ref.max() - ref.min())
        err = float(np.abs(ours - ref).max())
        assert span > 0, f"{name}:{out_name} has no range over the inputs tried"
        assert err <= REL_TOL * span, f"{name}:{out_name} max err {err:.3g} > {REL_TOL} x range {span:.3g}"


def _check_segmentation(name: str, xs: list[np.ndarray], k: int, ours_logits: np.ndarray) -> None:
    fast = _sigmoid(_case(name, [])[1][k])
    if name not in _EXACT:
        _EXACT[name] = _run_litert(name, xs, reference_kernels=True)
    exact = _sigmoid(_EXACT[name][k])
    ours = _sigmoid(ours_logits)
    span = float(exact.max() - exact.min())
    litert_self = float(np.abs(fast - exact).max())
    err = np.abs(ours - exact)
    allowed = max(REL_TOL * span, litert_self)
    assert float(err.max()) <= allowed, f"{name}: mask err {err.max():.3g} > {allowed:.3g} (LiteRT {litert_self:.3g})"
    assert float((err <= REL_TOL * span).mean()) >= 0.998
