#!/usr/bin/env bash
# Compile every cpp_ext/*.cu for each supported GPU architecture (warnings are errors, ptxas
# too); ARCHS = icnseg.runtime.cuda_launch.FATBIN_ARCHS (a test checks). The shipped fatbins
# come from tools/build_fatbins.py.
# Prints one line per file; exits non-zero on any compile error. Without nvcc: skipped (0).
set -euo pipefail

ARCHS=(75 80 86 87 89 90)
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-nvcc}"

if ! command -v "$NVCC" >/dev/null 2>&1; then
    echo "nvcc not found: skipped CUDA compile check"
    exit 0
fi

shopt -s nullglob
sources=("$ROOT"/cpp_ext/*.cu)
if [ ${#sources[@]} -eq 0 ]; then
    echo "no cpp_ext/*.cu files: nothing to check"
    exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

gencode=()
arch_list=""
for a in "${ARCHS[@]}"; do
    arch_list="${arch_list:+$arch_list,}sm_$a"
    gencode+=(-gencode "arch=compute_${a},code=sm_${a}")
done

status=0
for src in "${sources[@]}"; do
    name="$(basename "$src" .cu)"
    start=$SECONDS
    if "$NVCC" -fatbin -Werror all-warnings -Xptxas -Werror "${gencode[@]}" \
        -I "$ROOT/cpp_ext" -o "$tmp/$name.fatbin" "$src" 2>"$tmp/$name.log"; then
        echo "ok   cpp_ext/$name.cu  $arch_list  ($((SECONDS - start)) s)"
    else
        echo "FAIL cpp_ext/$name.cu"
        sed 's/^/    /' "$tmp/$name.log"
        status=1
    fi
done
exit "$status"
