#!/usr/bin/env bash
# Trains and evaluates the bundled default model and its baselines on AMCSD (2 CPU cores).
# Run from the repository root. Each CGCNN training run takes 15-30 min on 2 busy cores; the
# composition-only runs take a few minutes.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
D=benchmarks/default_model

# stage 1 (titles): the shipped model (sg: CGCNN + composition + space group), the two
# baselines (composition-only; the shipped architecture with its crystal tower frozen at random
# initialisation), then the ablations (same trainer, split and stopping rule)
STAGE1=(sg composition random_sg comp_sg default)
for name in "${STAGE1[@]}"; do
  matminer-clasp train $D/train_${name}.yaml
done

# stage 2 (paper): keyword captions, the same split (mapped by structure id)
for name in sg_stage2 composition_stage2 random_sg_stage2 comp_sg_stage2 keywords_stage2; do
  python $D/finetune_keywords.py --pretrain-config $D/train_default.yaml \
      --config $D/train_${name}.yaml
done

# every model on the same test split: the amcsd keyword set (targets), the extended set and
# the paper's six concepts
for name in "${STAGE1[@]}" sg_stage2 composition_stage2 random_sg_stage2 comp_sg_stage2 \
            keywords_stage2; do
  for part in "keywords amcsd" "extended amcsd-extended" "paper paper"; do
    set -- $part
    matminer-clasp evaluate "runs/$name/best" --config $D/train_default.yaml --split test \
        --out "runs/eval/$name/$1" --keywords "$2" --bootstrap 1000
  done
done

# the report (prints "target met" / "target MISSED" for each of the targets) and the
# packaged model
python $D/make_report.py --config $D/train_default.yaml --out docs/model-report.md \
    --json-out $D/results/report.json \
    --eval default=runs/eval/sg_stage2 composition=runs/eval/composition_stage2 \
           random=runs/eval/random_sg_stage2 comp_sg=runs/eval/comp_sg_stage2 \
           no_sg=runs/eval/keywords_stage2 stage1=runs/eval/sg \
           composition_stage1=runs/eval/composition random_stage1=runs/eval/random_sg
python $D/package_model.py runs/sg_stage2/best --run runs/sg_stage2 \
    --eval-config $D/train_default.yaml --report docs/model-report.md
