#!/usr/bin/env bash
# Trains and evaluates the bundled default model and its baselines on AMCSD (2 CPU cores).
# Run from the repository root. Each training run takes 15-40 min on 2 busy cores.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
D=benchmarks/default_model
KEYWORDS=("high pressure" spinel magnetic oxide "high temperature" "phase transition" superconduct
          perovskite silicate sulfide pyroxene phosphate "new mineral" olivine carbonate garnet)
PAPER=(ferromagnetic ferroelectric semiconductor electroluminescence thermoelectric superconductor)

# the shipped model, the two baselines, then the ablations (same trainer, split, stopping rule)
RUNS=(default composition random_tower cgcnn fusion_lr5e-4 cosface)
for name in "${RUNS[@]}"; do
  cfg=$D/train_${name}.yaml
  [ -f "$cfg" ] || cfg=$D/train_${name}_ablation.yaml
  matminer-clasp train "$cfg"
done

# paper stage 2: keyword captions, the same split (mapped by structure id)
for name in keywords_stage2 composition_stage2 random_tower_stage2; do
  python $D/finetune_keywords.py --pretrain-config $D/train_default.yaml \
      --config $D/train_${name}.yaml
done

for name in "${RUNS[@]}" keywords_stage2 composition_stage2 random_tower_stage2; do
  model=runs/$name/best
  matminer-clasp evaluate "$model" --config $D/train_default.yaml --split test \
      --out runs/eval/$name/keywords --keywords "${KEYWORDS[@]}" --bootstrap 1000
  matminer-clasp evaluate "$model" --config $D/train_default.yaml --split test \
      --out runs/eval/$name/paper --keywords "${PAPER[@]}" --bootstrap 1000
done

python $D/make_report.py --config $D/train_default.yaml --out docs/model-report.md \
    --eval default=runs/eval/keywords_stage2 composition=runs/eval/composition_stage2 \
           random=runs/eval/random_tower_stage2 stage1=runs/eval/default \
           composition_stage1=runs/eval/composition random_stage1=runs/eval/random_tower \
           cgcnn=runs/eval/cgcnn fusion_lr5e-4=runs/eval/fusion_lr5e-4
python $D/package_model.py runs/keywords_stage2/best --run runs/keywords_stage2 \
    --eval-config $D/train_default.yaml --report docs/model-report.md
