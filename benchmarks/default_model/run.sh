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

for name in "${RUNS[@]}"; do
  model=runs/$name/best
  matminer-clasp evaluate "$model" --config $D/train_default.yaml --split test \
      --out runs/eval/$name/keywords --keywords "${KEYWORDS[@]}" --bootstrap 1000
  matminer-clasp evaluate "$model" --config $D/train_default.yaml --split test \
      --out runs/eval/$name/paper --keywords "${PAPER[@]}" --bootstrap 1000
done

python $D/make_report.py --config $D/train_default.yaml --out docs/model-report.md \
    --eval default=runs/eval/default composition=runs/eval/composition \
           random=runs/eval/random_tower cgcnn=runs/eval/cgcnn \
           fusion_lr5e-4=runs/eval/fusion_lr5e-4
python $D/package_model.py runs/default/best --run runs/default --report docs/model-report.md
