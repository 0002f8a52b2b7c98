#!/usr/bin/env bash
# Create benchmarks/peers/.venv: anomalib (the DRAEM peer) in a virtual environment of its own.
#
# Why a separate venv: anomalib needs torchvision, lightning, timm, kornia, ... which texinspect
# does not, and a newer torch. torch 2.14.1 + torchvision 0.29.1 install from local disk here.
# Note: that torch wheel is the registry's default Linux build, i.e. the CUDA build with its
# nvidia-* runtime wheels (~2.5 GB, also on local disk); it runs on CPU. texinspect's own CPU-only
# torch 2.13.0+cpu cannot be used: the registry's torchvision wheels link libtorch_cuda.so and fail
# to import against a CPU-only torch ("operator torchvision::nms does not exist").
# Order: torch + torchvision first, then anomalib under constraints that pin both, so no
# dependency can swap in another torch.
#
#   bash benchmarks/peers/setup.sh            # idempotent: skips when .venv/.installed exists
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
python="${PYTHON:-python3}"
torch_spec="${PEER_TORCH:-torch==2.14.1}"
vision_spec="${PEER_TORCHVISION:-torchvision==0.29.1}"
anomalib_spec="${PEER_ANOMALIB:-anomalib==2.7.0}"

if [[ -f "$venv/.installed" ]]; then
  echo "peer venv ready: $venv"
  exit 0
fi
test -x "$venv/bin/python" || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install -q)
constraints="$venv/constraints.txt"
printf '%s\n%s\n' "$torch_spec" "$vision_spec" > "$constraints"
"${pip[@]}" "$torch_spec" "$vision_spec"
"${pip[@]}" -c "$constraints" "$anomalib_spec"
# Fail here, not in the middle of a benchmark, if the install is unusable.
"$venv/bin/python" - <<'PY'
import torch, torchvision
from anomalib.models.image.draem.torch_model import DraemModel
from anomalib.models.image.draem.loss import DraemLoss
print("peer venv ok: torch", torch.__version__, "torchvision", torchvision.__version__)
PY
touch "$venv/.installed"
echo "peer venv ready: $venv"
