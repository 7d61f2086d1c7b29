#!/usr/bin/env bash
# Run the project's CUDA paths on a lent GPU machine (the device tool's `run`), or as far as possible here.
#
#   scripts/gpu_session.sh PHASE...      PHASE: check, tests, pose, bench (= bench_gv + bench_more), all
#
# check: machine and package versions, installs the carried wheels (.whl/, into /tmp/site), imports every
#        package of ours, one CUDA test. tests: the test files with CUDA paths (and their neighbours), the pose
#        oracle criteria on cuda:0, through a CUDA gvirtus backend and on this machine's CPU, and the gvirtus
#        suite against a CUDA backend (VM_TEST_GVIRTUS_DEVICE). bench_gv: gvirtus (CPU and CUDA backend), pose and
#        preprocess (gvirtus backend on CUDA, local GPU column). bench_more: VITON-HD (CPU and GPU), the geometric
#        engine and transport (CPU-only benches: a second machine's point).
# Code: .snap/ when present (a `git archive` of the commit under test, its COMMIT file naming it; the models
# are linked in from models/), else this checkout. Logs go to $OUT (default /tmp/gpu_session), one per phase.
# On a machine without CUDA the CUDA tests skip and the CUDA bench rows are left out; nothing here needs one.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# here: the project's venv; on the device machine (no .venv travels): its python3 plus the carried wheels
ON_DEVICE=
if [ -x "$ROOT/.venv/bin/python" ]; then PY=${PY:-$ROOT/.venv/bin/python}; else PY=${PY:-python3}; ON_DEVICE=1; fi

SRC=$ROOT
if [ -d "$ROOT/.snap" ]; then
    SRC=$ROOT/.snap
    for f in "$ROOT"/models/*.tflite; do [ -e "$f" ] && ln -sf "$f" "$SRC/models/"; done
fi
cd "$SRC" || exit 1
COMMIT=$(cat COMMIT 2>/dev/null || git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)

# carried wheels (device machine only: it has no registry), installed into its interpreter itself so that
# child processes started with their own PYTHONPATH (tests do) see them too; our protobuf/grpcio replace the
# image's older ones (the generated gvirtus/proto code needs grpcio >= 1.85.1)
if [ -n "$ON_DEVICE" ] && [ -d "$ROOT/.whl" ] && [ ! -f /tmp/.wheels_done ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade "$ROOT"/.whl/*.whl \
        >"$OUT/pip.log" 2>&1 || { echo "wheel install failed"; tail -20 "$OUT/pip.log"; exit 1; }
    touch /tmp/.wheels_done
fi
export PYTHONPATH=$SRC${PYTHONPATH:+:$PYTHONPATH}

banner() { echo; echo "===== $* ($(date -u +%H:%M:%S) UTC)"; }
timed() {
  local t0=$SECONDS; "$@"; local rc=$?
  echo "[rc=$rc, ${SECONDS}s total so far, $((SECONDS - t0)) s this step]"; return $rc
}

phase_check() {
    banner "machine (commit $COMMIT)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || echo "no nvidia-smi"
    "$PY" - <<'EOF'
import importlib, platform, os, sys
import torch
print("python", sys.version.split()[0], platform.machine(), os.cpu_count(), "cpus")
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "cudnn", torch.backends.cudnn.version() if torch.cuda.is_available() else None)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 2**30:.1f} GiB", f"sm {p.major}.{p.minor}", p.multi_processor_count, "SMs")
    print("tf32 matmul", torch.backends.cuda.matmul.allow_tf32, "tf32 cudnn", torch.backends.cudnn.allow_tf32)
for m in ["numpy", "cv2", "PIL", "skimage", "grpc", "google.protobuf", "zmq", "kornia", "flask", "gunicorn",
          "jsonschema", "cryptography", "prometheus_client", "tflite", "flatbuffers", "ai_edge_litert", "pytest"]:
    try:
        mod = importlib.import_module(m)
        print(f"  {m:<18} {getattr(mod, '__version__', '?'):<12} {os.path.dirname(mod.__file__ or '')}")
    except Exception as exc:
        print(f"  {m:<18} MISSING: {type(exc).__name__}: {exc}")
bad = []
for m in ["mirror", "transport", "gvirtus", "gvirtus.backend", "gvirtus.testing", "node1.pose", "node1.parsing",
          "node1.tryon.preprocess", "node1.tryon.distributed", "node1.web", "node2.gateway", "viton", "viton.service",
          "viton.vitonhd", "garments", "bench.common"]:
    try:
        importlib.import_module(m)
    except Exception as exc:
        bad.append(f"{m}: {type(exc).__name__}: {exc}")
print("our packages:", "all import" if not bad else "FAILED " + "; ".join(bad))
from mirror import model_path
for f in ["pose_detection.tflite", "pose_landmark_full.tflite", "face_detection_short_range.tflite",
          "selfie_segmentation.tflite"]:
    model_path(f)
print("models: sha256 ok")
EOF
    banner "one CUDA test"
    timed "$PY" -m pytest -q -rs -p no:cacheprovider "tests/pose/test_remote.py::test_pose_on_a_local_gpu_matches_cpu"
}

phase_tests() {
    banner "tests with CUDA paths (and the rest of their folders)"
    timed "$PY" -m pytest -q -rs -p no:cacheprovider --durations=8 tests/pose tests/tflite tests/vitonhd \
        tests/gvirtus/test_backend.py
    banner "pose oracle criteria per device"
    for d in cpu portable-cpu cuda:0; do timed "$PY" scripts/pose_oracle_check.py --device "$d"; done
    timed "$PY" scripts/pose_oracle_check.py --device cuda:0 --no-tf32
    timed "$PY" scripts/pose_oracle_check.py --backend-device cuda
    banner "gvirtus suite against a CUDA backend (VM_TEST_GVIRTUS_DEVICE=cuda)"
    # the out-of-range index test loses the shared backend's CUDA context (it exits for a restart, by design):
    # it runs last, on its own backend
    local idx=tests/gvirtus/test_transparent.py::test_error_surfaces_at_the_next_sync
    VM_TEST_GVIRTUS_DEVICE=cuda timed "$PY" -m pytest -q -rs -p no:cacheprovider --durations=5 tests/gvirtus \
        --deselect "$idx"
    VM_TEST_GVIRTUS_DEVICE=cuda timed "$PY" -m pytest -q -rs -p no:cacheprovider "$idx"
}

phase_pose() {   # the pose path alone (tests, oracle, benches): a quick re-check after pose changes
    banner "pose tests, gvirtus backend/kernel tests"
    timed "$PY" -m pytest -q -rs -p no:cacheprovider tests/pose tests/gvirtus/test_backend.py \
        $(ls tests/gvirtus/test_kernels.py 2>/dev/null)
    banner "pose oracle criteria on CUDA"
    timed "$PY" scripts/pose_oracle_check.py --device cuda:0
    timed "$PY" scripts/pose_oracle_check.py --device cuda:0 --no-tf32
    timed "$PY" scripts/pose_oracle_check.py --backend-device cuda
    banner "pose_bench and preprocess_bench (2 threads; gvirtus backend on cuda; local GPU column)"
    timed "$PY" bench/pose_bench.py --threads 2 --runs "${RUNS:-20}" --backend-device cuda
    timed "$PY" bench/preprocess_bench.py --threads 2 --runs "${RUNS:-20}" --backend-device cuda
}

cuda_or_cpu() {
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && echo cuda || echo cpu
}

phase_bench_gv() {
    local cuda
    cuda=$(cuda_or_cpu)
    banner "gvirtus_bench, CPU backend"
    timed "$PY" bench/gvirtus_bench.py ${QUICK:+--quick}
    banner "gvirtus_bench, $cuda backend"
    [ "$cuda" = cuda ] && timed "$PY" bench/gvirtus_bench.py ${QUICK:+--quick} --device cuda
    banner "pose_bench (2 threads; gvirtus backend on $cuda; local GPU column)"
    timed "$PY" bench/pose_bench.py --threads 2 --runs "${RUNS:-20}" --backend-device "$cuda"
    banner "preprocess_bench (2 threads; gvirtus backend on $cuda; local GPU column)"
    timed "$PY" bench/preprocess_bench.py --threads 2 --runs "${RUNS:-20}" --backend-device "$cuda"
}

phase_bench_more() {
    banner "vitonhd_bench (CPU at ${VTHREADS:-16} threads, then GPU)"
    timed "$PY" bench/vitonhd_bench.py --threads "${VTHREADS:-16}" --repeats "${VREPEATS:-3}"
    banner "viton_bench (geometric engine, CPU, 2 threads)"
    timed "$PY" bench/viton_bench.py --threads 2
    banner "transport_bench (commit $COMMIT)"
    timed "$PY" bench/transport_bench.py
}

[ $# -gt 0 ] || set -- all
for PHASE in "$@"; do
    case "$PHASE" in
        check|tests|pose|bench_gv|bench_more) "phase_$PHASE" 2>&1 | tee "$OUT/$PHASE.log" ;;
        bench) for p in bench_gv bench_more; do "phase_$p" 2>&1 | tee "$OUT/$p.log"; done ;;
        all) for p in check tests bench_gv bench_more; do "phase_$p" 2>&1 | tee "$OUT/$p.log"; done ;;
        *) echo "usage: $0 check|tests|pose|bench|bench_gv|bench_more|all ..."; exit 2 ;;
    esac
done
