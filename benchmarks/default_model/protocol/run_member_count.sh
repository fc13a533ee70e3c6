#!/usr/bin/env bash
# Protocol (issue 14), lever: member count. After run_default_recipe.sh, with a third graph member
# (graph_s44.yaml and, as a second draw, graph_s45.yaml, each with its stage 2): the recipe with
# 3 graph + 2 composition members against the shipped recipe's 2 + 2, on the seed-2026
# validation split. recipe_3g2c adds seed 44, recipe_3g2c_s45 seed 45.
source benchmarks/default_model/protocol/lib.sh
for seed in 44 45; do
  name=recipe_3g2c; [ $seed = 44 ] || name=recipe_3g2c_s$seed
  stage1 graph_s$seed
  stage2 graph_s$seed
  merge $name $R/graph_s4{2,3}_stage2/best $R/graph_s${seed}_stage2/best \
      $R/comp_member_s4{2,3}_stage2/best
  evaluate_val $name
  compare_val $name default_recipe
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_member_count.json \
    --eval recipe_3g2c=$R/eval/recipe_3g2c recipe_3g2c_s45=$R/eval/recipe_3g2c_s45 \
    --compare recipe_3g2c_vs_default_recipe=$R/eval/compare_recipe_3g2c_vs_default_recipe \
              recipe_3g2c_s45_vs_default_recipe=$R/eval/compare_recipe_3g2c_s45_vs_default_recipe
