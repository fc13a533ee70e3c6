#!/usr/bin/env bash
# Protocol (issue 14), lever: knowledge from a foundation model of crystals, by distillation.
# CHGNet's crystal features of the seed-2026 training structures are an auxiliary target of the
# graph member's CGCNN vector (graph_distill_s42/s43.yaml, distill_weight 0.5, fixed before any
# run); the same member without it (graph_s42/s43.yaml) is the baseline. Both seeds, stage 1
# (titles), validation split only; a single stage-1 graph member takes 25-45 min on one core,
# so the screen stops before stage 2. Run from the repository root; two trainings can go at once.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol
T=runs/teacher/chgnet_s2026_train.safetensors
[ -f $T ] || matminer-clasp teacher-features $P/split_s2026.yaml --split train --out $T
for run in graph_s42 graph_s43 graph_distill_s42 graph_distill_s43; do
  [ -d $R/$run/best ] || matminer-clasp train $P/$run.yaml
  for keywords in amcsd auto; do
    [ -f $R/eval/$run/$keywords/report.json ] || matminer-clasp evaluate $R/$run/best \
        --config $P/split_s2026.yaml --split val --keywords $keywords --bootstrap 1000 \
        --out $R/eval/$run/$keywords
  done
done
for keywords in amcsd auto; do
  for seed in 42 43; do
    matminer-clasp compare $R/eval/graph_distill_s$seed/$keywords $R/eval/graph_s$seed/$keywords \
        --bootstrap 1000 --out $R/eval/compare_distill_vs_plain_s${seed}_$keywords.json
  done
  matminer-clasp compare $R/eval/graph_distill_s42/$keywords,$R/eval/graph_distill_s43/$keywords \
      $R/eval/graph_s42/$keywords,$R/eval/graph_s43/$keywords \
      --bootstrap 1000 --out $R/eval/compare_distill_vs_plain_both_$keywords.json
  matminer-clasp compare $R/eval/graph_s43/$keywords $R/eval/graph_s42/$keywords \
      --bootstrap 1000 --out $R/eval/compare_plain_s43_vs_s42_$keywords.json
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_distill.json \
    --eval $(for run in graph_s42 graph_s43 graph_distill_s42 graph_distill_s43; do
               echo "$run=$R/eval/$run"; done) \
    --compare $(for c in distill_vs_plain_s42 distill_vs_plain_s43 distill_vs_plain_both \
                         plain_s43_vs_s42; do echo "$c=$R/eval/compare_$c"; done)
