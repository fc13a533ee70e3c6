#!/usr/bin/env bash
# Protocol (issue 14), lever: member count. After run_default_recipe.sh, with a third graph member
# (graph_s44.yaml and, as a second draw, graph_s45.yaml, each with its stage 2): the recipe with
# 3 graph + 2 composition members against the shipped recipe's 2 + 2, on the seed-2026
# validation split. recipe_3g2c adds seed 44, recipe_3g2c_s45 seed 45.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol
for seed in 44 45; do
  name=recipe_3g2c; [ $seed = 44 ] || name=recipe_3g2c_s$seed
  [ -d $R/graph_s$seed/best ] || matminer-clasp train $P/graph_s$seed.yaml
  [ -d $R/graph_s${seed}_stage2/best ] || python benchmarks/default_model/finetune_keywords.py \
      --pretrain-config $P/split_s2026.yaml --config $P/graph_s${seed}_stage2.yaml
  [ -d $R/$name ] || matminer-clasp merge $R/$name $R/graph_s4{2,3}_stage2/best \
      $R/graph_s${seed}_stage2/best $R/comp_member_s4{2,3}_stage2/best
  for keywords in amcsd auto; do
    [ -f $R/eval/$name/$keywords/report.json ] || matminer-clasp evaluate $R/$name \
        --config $P/split_s2026.yaml --split val --keywords $keywords --bootstrap 1000 \
        --out $R/eval/$name/$keywords
    matminer-clasp compare $R/eval/$name/$keywords $R/eval/default_recipe/$keywords \
        --bootstrap 1000 --out $R/eval/compare_${name}_vs_default_recipe_$keywords.json
  done
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_member_count.json \
    --eval recipe_3g2c=$R/eval/recipe_3g2c recipe_3g2c_s45=$R/eval/recipe_3g2c_s45 \
    --compare recipe_3g2c_vs_default_recipe=$R/eval/compare_recipe_3g2c_vs_default_recipe \
              recipe_3g2c_s45_vs_default_recipe=$R/eval/compare_recipe_3g2c_s45_vs_default_recipe
