#!/usr/bin/env bash
# The GPU check of issue 15, as one command for a CUDA machine (about 5-8 minutes on one recent
# data-centre GPU):
#
#   1. Prime Pantry: preprocess, MiniLM text on the GPU, and the three phases with the training
#      defaults (cosine schedule over 60 epochs, early stopping), as `pad run` trains them;
#   2. MIND size (630,235 users, 79,707 items, 9.7M interactions; synthetic log, 4,096-d random
#      text): one epoch of each phase, bf16 autocast (pad's default on CUDA), and full-ranking
#      evaluation of every user.
#
# It prints the card, then per step the wall time, training s/epoch, evaluation seconds, peak RSS,
# peak GPU memory and the projected time of a full run (60 / 60 / 10 epochs); results land in
# $WORK/<run>/result.json and the logs beside them.
#
#   bash bench/gpu.sh              # needs: pad installed with a CUDA build of torch, and the Prime Pantry
#                                  # release under $PAD_DATA_HOME (or internet to download it)
#   bash bench/gpu.sh --dry-run    # the same steps on the CPU, small (1 epoch, MIND / 100): checks the script
#
# Environment: WORK (default /tmp/pad-gpu), PAD_DATA_HOME, THREADS (CPU threads per step, default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/pad-gpu}
THREADS=${THREADS:-$(nproc)}
export PYTHONUNBUFFERED=1

if [[ ${1:-} == --dry-run ]]; then
  device=cpu
  pantry=(--epochs 1)
  mind=(--users 6300 --items 800 --interactions 96700 --dim 256)
  echo "dry run on the CPU: Prime Pantry 1 epoch per phase, MIND / 100 with 256-d text"
else
  device=cuda
  pantry=(--epochs 0)
  mind=(--preset mind --dim 4096)
  python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'bench/gpu.sh: no CUDA GPU visible to torch')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
fi

t0=$SECONDS
common=(--device "$device" --threads "$THREADS" --work "$WORK" --skip analyze recommend)
python bench/scale.py run --source prime_pantry "${pantry[@]}" --label prime_pantry "${common[@]}"
python bench/scale.py run "${mind[@]}" --epochs 1 --label mind "${common[@]}"
echo "bench/gpu.sh: $(( SECONDS - t0 )) s in all; results in $WORK/prime_pantry and $WORK/mind"
