#!/usr/bin/env bash
# Reproduce the shipped camvid-tiny model and its results from CamVid on a 2-core CPU.
#   scripts/build_camvid_tiny.sh /path/to/camvid        (folder holding train/ and val/)
# Stages: foundation (DDP over 2 processes), prompt predictor, LoRA r4/r8/r16, gated adapters,
# a mask-decoder phase on the fixed encoder, the detail head (alone, then with the decoder,
# then two polishing legs of that),
# packaging into ranksam_ros/models/camvid-tiny, then the results tables of docs/results.md.
set -euo pipefail
DATA="${1:?usage: scripts/build_camvid_tiny.sh CAMVID_DIR}"
RUNS="${RUNS:-runs}"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stamp() { echo "[$(date +%H:%M:%S)] $*"; }

stamp "foundation"
torchrun --nproc_per_node 2 -m ranksam_ros.cli train --config config/train/foundation.yaml \
  --data "$DATA" --out "$RUNS/foundation"
FOUNDATION="$RUNS/foundation/model.safetensors"

stamp "prompt predictor"
ranksam train --config config/train/prompt_predictor.yaml --data "$DATA" \
  --set "model=$FOUNDATION" --out "$RUNS/prompt_predictor"

for rank in 4 8 16; do
  stamp "LoRA r$rank"
  ranksam train --config config/train/adapter_lora.yaml --data "$DATA" \
    --set "model=$FOUNDATION" --set "adapter.rank=$rank" --out "$RUNS/adapter_lora_r$rank"
done

stamp "gated adapters"
ranksam train --config config/train/adapter_gated.yaml --data "$DATA" \
  --set "model=$FOUNDATION" --out "$RUNS/adapter_gated"

stamp "decoder phase (image encoder fixed)"
ranksam train --config config/train/decoder.yaml --data "$DATA" \
  --set "init=$FOUNDATION" --out "$RUNS/decoder"

stamp "detail head (SAM fixed), then detail head + decoder (image encoder fixed)"
ranksam train --config config/train/detail.yaml --data "$DATA" \
  --set "init=$RUNS/decoder/model.safetensors" --out "$RUNS/detail"
ranksam train --config config/train/detail_joint.yaml --data "$DATA" \
  --set "init=$RUNS/detail/model.safetensors" --out "$RUNS/detail_joint"

stamp "two polishing legs of detail head + decoder at lower rates (image encoder fixed)"
ranksam train --config config/train/detail_polish.yaml --data "$DATA" \
  --set "init=$RUNS/detail_joint/model.safetensors" --out "$RUNS/detail_polish"
ranksam train --config config/train/detail_polish.yaml --data "$DATA" \
  --set "init=$RUNS/detail_polish/model.safetensors" --set seed=8 --set optim.steps=1200 \
  --set optim.lr=5e-5 --out "$RUNS/detail_polish2"

stamp "package"
python scripts/package_model.py --runs "$RUNS"
stamp "results"
python scripts/results_adapters.py --data "$DATA/val"
python scripts/results_adapters.py --data "$DATA/val" --severities 4,5   # beyond training
python scripts/results_adapters.py --data "$DATA/val" --prompts point --limit 34   # 1 click
python scripts/results_oracle.py --data "$DATA" --runs "$RUNS" \
  --foundation "$FOUNDATION"   # trains two specialist LoRAs (about 15 min each, alone)
python scripts/package_model.py --runs "$RUNS"   # re-pick the `lora` alias from the results
python scripts/results_foundation.py --data "$DATA/val"
python scripts/calibrate_threshold.py --data "$DATA/val"   # checks pipeline.box_mask_threshold
python scripts/results_prompts.py --data "$DATA/val"
python scripts/results_training.py --runs "$RUNS"
stamp "done"
