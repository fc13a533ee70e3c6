#!/usr/bin/env bash
# Protocol (issue 14), lever: member count. After run_default_recipe.sh, with a third graph member
# (graph_s44.yaml, graph_s44_stage2.yaml): the recipe with 3 graph + 2 composition members
# against the shipped recipe's 2 + 2, on the seed-2026 validation split.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol
[ -d $R/graph_s44/best ] || matminer-clasp train $P/graph_s44.yaml
[ -d $R/graph_s44_stage2/best ] || python benchmarks/default_model/finetune_keywords.py \
    --pretrain-config $P/split_s2026.yaml --config $P/graph_s44_stage2.yaml
[ -d $R/recipe_3g2c ] || matminer-clasp merge $R/recipe_3g2c $R/graph_s4{2,3,4}_stage2/best \
    $R/comp_member_s4{2,3}_stage2/best
for keywords in amcsd auto; do
  [ -f $R/eval/recipe_3g2c/$keywords/report.json ] || matminer-clasp evaluate $R/recipe_3g2c \
      --config $P/split_s2026.yaml --split val --keywords $keywords --bootstrap 1000 \
      --out $R/eval/recipe_3g2c/$keywords
  matminer-clasp compare $R/eval/recipe_3g2c/$keywords $R/eval/default_recipe/$keywords \
      --bootstrap 1000 --out $R/eval/compare_recipe_3g2c_vs_default_recipe_$keywords.json
done
