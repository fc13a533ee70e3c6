#!/usr/bin/env bash
# Protocol (issue 14), third session: two levers on the graph member, screened at stage 1.
# - Distillation (knowledge from a foundation model of crystals): CHGNet's crystal features of
#   the seed-2026 training structures are an auxiliary target of the CGCNN vector
#   (graph_distill_s42/s43.yaml, distill_weight 0.5, fixed before any run; then
#   graph_distill_w01_s42/s43.yaml, weight 0.1).
# - Hard negatives: batches of whole chemical systems (graph_chemsys_s42/s43.yaml).
# The baseline is the same member without the lever (graph_s42/s43.yaml); both seeds, stage 1
# (titles), validation split only. A stage-1 graph member early-stops after about 240 steps,
# 10-12 min on one core (next to a second run); two trainings can go at once. Run from the
# repository root.
source benchmarks/default_model/protocol/lib.sh
T=runs/teacher/chgnet_s2026_train.safetensors
[ -f $T ] || matminer-clasp teacher-features $P/split_s2026.yaml --split train --out $T
LEVERS=(distill distill_w01 chemsys)
RUNS=(graph_s42 graph_s43)
for lever in "${LEVERS[@]}"; do RUNS+=(graph_${lever}_s42 graph_${lever}_s43); done
for run in "${RUNS[@]}"; do  # stage 1 only: evaluated under the run's own name
  stage1 $run
  evaluate_val_model $run $R/$run/best
done
COMPARES=(plain_s43_vs_s42)
for keywords in amcsd auto; do
  matminer-clasp compare $R/eval/graph_s43/$keywords $R/eval/graph_s42/$keywords \
      --bootstrap 1000 --out $R/eval/compare_plain_s43_vs_s42_$keywords.json
  for lever in "${LEVERS[@]}"; do
    for seed in 42 43; do
      matminer-clasp compare $R/eval/graph_${lever}_s$seed/$keywords \
          $R/eval/graph_s$seed/$keywords --bootstrap 1000 \
          --out $R/eval/compare_${lever}_vs_plain_s${seed}_$keywords.json
    done
    matminer-clasp compare \
        $R/eval/graph_${lever}_s42/$keywords,$R/eval/graph_${lever}_s43/$keywords \
        $R/eval/graph_s42/$keywords,$R/eval/graph_s43/$keywords \
        --bootstrap 1000 --out $R/eval/compare_${lever}_vs_plain_both_$keywords.json
  done
done
for lever in "${LEVERS[@]}"; do
  COMPARES+=(${lever}_vs_plain_s42 ${lever}_vs_plain_s43 ${lever}_vs_plain_both)
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_graph_levers.json \
    --eval $(for run in "${RUNS[@]}"; do echo "$run=$R/eval/$run"; done) \
    --compare $(for c in "${COMPARES[@]}"; do echo "$c=$R/eval/compare_$c"; done)
