#!/bin/sh
# Vitrina's GPU check (written by `cargo xtask gpu-check --prepare DIR`). Run it on a machine
# with an NVIDIA GPU: it needs the driver and CUDA 13's runtime libraries (cudart, cublas,
# curand, nvrtc: any CUDA 13 install, the nvidia/cuda runtime image, or the PyPI wheels), and
# nothing else. It writes its test models into $GPU_CHECK_WORK (default: DIR/work) and prints
# one JSON line per result.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=${GPU_CHECK_WORK:-$here/work}
mkdir -p "$work"
binary="$work/gpu_check"
if [ ! -x "$binary" ] || [ "$here/gpu_check.gz" -nt "$binary" ]; then
    gzip -dc "$here/gpu_check.gz" > "$binary.part"
    chmod +x "$binary.part"
    mv "$binary.part" "$binary"
fi

# CUDA 13's libraries wherever this machine keeps them; the driver's own libcuda is found
# by the system loader.
found=""
for dir in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 \
    /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/targets/x86_64-linux/lib; do
    [ -d "$dir" ] && found="$found:$dir"
done
if command -v python3 >/dev/null 2>&1; then
    for site in $(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
        for dir in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib; do
            [ -d "$dir" ] && found="$found:$dir"
        done
    done
fi
LD_LIBRARY_PATH="${LD_LIBRARY_PATH:-}$found"
export LD_LIBRARY_PATH

missing=$(ldd "$binary" 2>/dev/null | awk '/not found/ { print $1 }' | tr '\n' ' ')
case "$missing" in
    *libcuda.so*)
        echo "gpu-check: no CUDA driver found (libcuda.so.1 is not on this machine): run this on a machine with an NVIDIA GPU and its driver" >&2
        exit 2 ;;
    ?*)
        echo "gpu-check: a CUDA driver is here but CUDA 13's runtime libraries are not: $missing- install CUDA 13.0 (or pip install nvidia-cuda-runtime nvidia-cublas nvidia-curand nvidia-cuda-nvrtc for CUDA 13) or add their folder to LD_LIBRARY_PATH" >&2
        exit 3 ;;
esac
exec "$binary" --dir "$work" "$@"
