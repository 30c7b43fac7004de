#!/usr/bin/env bash
# One-call GPU check, at most 9 minutes: install from carried wheels, `icnseg doctor`,
# `pytest -m gpu`, and a short bench at 448x448 (random-weight resnet50 + ICN vgg16 export):
# ONNX Runtime CPU and CUDA (its instances checked against torch on the CPU), the ONNX Runtime
# TensorRT provider, the TensorRT backend at fp32/fp16/int8 where TensorRT is installed (the
# torch backend runs on the CPU only). Every log goes under $OUT; summary.txt lists
# each step with its exit status and seconds, and the bench tables are concatenated into
# bench.md. A step that fails or runs out of time is recorded and the next one runs.
#
#   OUT=/some/dir tools/gpu_check.sh            # run from anywhere; the repo is this script's
#
# Wheels (a GPU machine without a package index that has torch with CUDA, cupy, nvcc, numpy,
# onnx and the CPU onnxruntime): pack them with ../shared/tools/gpu-wheels fetch (see its
# header; it needs a plain clone, not a git worktree, whose .git is a file), bring the chunks,
# and set CHUNKS=DIR (c00, c01, ...) or WHEELS=DIR (unpacked). This list resolved for CPython
# 3.12 manylinux x86_64 (28 files, 7 chunks, 400 MB; onnxruntime-gpu is 300 MB of it); the
# versions work with numpy 1.26 and 2.x. CUDA 12 hosts (torch +cu12x) need onnxruntime-gpu
# 1.23.x: PyPI's 1.24+ wheels need CUDA 13.
#   gpu-wheels fetch onnxruntime-gpu==1.23.2 scipy==1.14.1 opencv-python-headless==4.10.0.84 \
#     scikit-image==0.24.0 pycocotools==2.0.8 tqdm==4.67.1 safetensors==0.4.5 imageio==2.36.0 \
#     tifffile==2024.9.20 lazy_loader==0.4 networkx==3.4.2 pillow==11.0.0 coloredlogs==15.0.1 \
#     humanfriendly==10.0 flatbuffers==24.3.25 pycuda==2025.1.2 pytools==2024.1.14 \
#     platformdirs==4.3.6 mako==1.3.6 markupsafe==3.0.2 typing_extensions==4.12.2 \
#     siphash24==1.7 setuptools==80.9.0 wheel==0.45.1 pytest==8.3.4 pluggy==1.5.0 \
#     iniconfig==2.0.0 packaging==24.2
# (pycuda comes as its source archive and is built there with the host's nvcc: 2024.1.2 does
#  not compile against CUDA 13 headers (cuCtxCreate changed), 2025.1.2 does; add
#  tensorrt-cu12 + tensorrt-cu12-libs + tensorrt-cu12-bindings of one version for the TensorRT
#  rows, about 1.3 GB more). --no-deps installs into $SITE, first on PYTHONPATH; the system's
# packages are not touched (a second onnxruntime there is in another folder: no clash).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/gpu_check_out}"
BUDGET="${BUDGET:-540}"          # seconds for everything (9 min)
SIZE="${SIZE:-448}"              # model input side
BACKBONE="${BACKBONE:-resnet50}" ICN="${ICN:-vgg16}"
ITERS="${ITERS:-10}"
SITE="${SITE:-/tmp/icnseg-site}"
WORK="$(mktemp -d)"
mkdir -p "$OUT"
: > "$OUT/summary.txt"
cd "$ROOT"

left() { echo $((BUDGET - SECONDS)); }

# step NAME MAX_SECONDS MIN_SECONDS CMD...: run CMD with a timeout of min(MAX, time left),
# skipped when less than MIN_SECONDS are left; log in $OUT/NAME.log.
step() {
    local name=$1 max=$2 min=$3
    shift 3
    local budget
    budget=$(left)
    if [ "$budget" -lt "$min" ]; then
        echo "SKIP $name (only ${budget}s left)" | tee -a "$OUT/summary.txt"
        return 1
    fi
    [ "$budget" -lt "$max" ] && max=$budget
    local start=$SECONDS
    timeout --kill-after=5 "$max" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "$( [ $rc -eq 0 ] && echo ok || echo "FAIL rc=$rc" ) $name ($((SECONDS - start)) s)" \
        | tee -a "$OUT/summary.txt"
    tail -n 5 "$OUT/$name.log" | sed 's/^/    /'
    return $rc
}

install() {  # the wheels (no pycuda) and icnseg itself, into $SITE
    if [ -n "${CHUNKS:-}" ]; then
        mkdir -p /tmp/w && cat "$CHUNKS"/c* | tar -x -C /tmp/w && WHEELS=/tmp/w
    fi
    if [ -z "${WHEELS:-}" ]; then
        echo "no WHEELS/CHUNKS given: using what is installed"
    else
        python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" \
            "$WHEELS"/*.whl || return 1
    fi
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" \
        "$ROOT" || return 1
    rm -rf "$ROOT/build"  # setuptools' build folder of that install
    python3 -P -c "import icnseg.runtime as r, icnseg; print('icnseg', icnseg.__version__, r.__file__)"
}

build_pycuda() {  # pycuda from its source archive with the host's nvcc (minutes: one core)
    local sdist
    sdist=$(ls "${WHEELS:-/tmp/w}"/pycuda-*.tar.gz 2>/dev/null | head -1)
    [ -n "$sdist" ] || { echo "no pycuda source archive: the numpy matcher will be used"; return 0; }
    local nvcc_real
    nvcc_real="$(readlink -f "$(command -v nvcc)")"
    local root="${CUDA_ROOT:-$(dirname "$(dirname "$nvcc_real")")}"
    # pycuda's setup finds the toolkit from nvcc's folder (wrong for a wrapper script): the
    # compiler and linker are told directly (stubs: libcuda.so for linking, no driver needed)
    CUDA_ROOT="$root" CPATH="$root/include${CPATH:+:$CPATH}" \
        LIBRARY_PATH="$root/lib64:$root/lib64/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}" \
        python3 -m pip install --no-index --no-deps --no-build-isolation --target "$SITE" \
        "$sdist"
}

export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$SITE/bin:$PATH"
export PIP_BREAK_SYSTEM_PACKAGES=1  # --target installs only; nothing of the system is touched
export SITE ROOT
export -f install build_pycuda
# -P: never import icnseg from the source tree in the working directory (its export/, runtime/
# are subpackages only once installed)
PY=(python3 -P)
ICNSEG=("${PY[@]}" -c 'import sys; from icnseg.cli.main import main; sys.exit(main())')

{
    date -u; uname -a; nvidia-smi 2>&1 | head -20; python3 --version
    python3 -m pip list 2>/dev/null | grep -i -E "torch|onnx|cupy|numpy|tensorrt|pycuda|nvidia"
} > "$OUT/machine.log" 2>&1

step install 150 30 bash -c install
# pycuda builds in the background while the model is made and exported (CPU work)
(timeout --kill-after=5 "$(( $(left) < 260 ? $(left) : 260 ))" bash -c build_pycuda \
    > "$OUT/pycuda.log" 2>&1; echo $? > "$WORK/pycuda.rc") &
pycuda_pid=$!

ckpt="$WORK/random.safetensors" export_dir="$WORK/export"
step checkpoint 60 20 "${PY[@]}" tools/random_checkpoint.py "$ckpt" --backbone "$BACKBONE" \
    --icn-encoder "$ICN" --size "$SIZE"
# static K (TensorRT engines need it); parity is the bench's agreement check
step export 150 40 "${ICNSEG[@]}" export "$ckpt" --out "$export_dir" --peaks 8 --no-check
start=$SECONDS
wait "$pycuda_pid"
rc=$(cat "$WORK/pycuda.rc" 2>/dev/null || echo 1)
echo "$( [ "$rc" -eq 0 ] && echo ok || echo "FAIL rc=$rc" ) pycuda (waited $((SECONDS - start)) s;"\
     "the numpy matcher is used without it)" | tee -a "$OUT/summary.txt"

step doctor 60 10 "${ICNSEG[@]}" doctor
"${ICNSEG[@]}" doctor --json > "$OUT/doctor.json" 2> "$OUT/doctor_json.err"
step pytest_gpu 180 30 "${PY[@]}" -m pytest -m gpu -q -p no:cacheprovider \
    --junitxml="$OUT/pytest_gpu.xml" tests

bench() {  # bench NAME ARGS...: one bench run, JSON + Markdown under $OUT
    local name=$1
    shift
    step "bench_$name" 120 30 "${ICNSEG[@]}" bench "$ckpt" --export "$export_dir" --iters "$ITERS" \
        --warmup 2 --streams 0 --no-cold --json "$OUT/bench_$name.json" "$@"
}
bench ort_cuda --backend onnxruntime --device cuda
# instances of ONNX Runtime CUDA checked against torch on the CPU (the bench's agreement check
# runs before any timing and fails the step when they differ), one timed image each
bench agree_cuda_vs_torch_cpu --backend torch --backend onnxruntime --device cuda --iters 1 \
    --warmup 0
bench ort_cpu --backend onnxruntime --device cpu --iters 2 --warmup 1
bench ort_trt_ep --backend onnxruntime --device cuda --provider tensorrt
if python3 -c "import tensorrt" 2>/dev/null; then
    for precision in fp16 fp32 int8; do
        flags=()
        [ "$precision" = fp16 ] && flags=(--fp16)
        [ "$precision" = int8 ] && flags=(--int8 --calib "$ROOT/icnseg/assets/samples")
        # the bench loads the newest valid engine per graph: the one just built
        step "engine_$precision" 150 60 "${ICNSEG[@]}" build-engine "$export_dir" "${flags[@]}" &&
            bench "trt_$precision" --backend tensorrt --device cuda
    done
else
    echo "SKIP TensorRT rows (tensorrt not importable)" | tee -a "$OUT/summary.txt"
fi

for md in "$OUT"/bench_*.md; do
    [ -e "$md" ] && { echo "## $(basename "$md" .md)"; cat "$md"; echo; }
done > "$OUT/bench.md"
rm -rf "$WORK"
echo "done in ${SECONDS}s; logs in $OUT" | tee -a "$OUT/summary.txt"
