#!/usr/bin/env bash
# Protocol (issue 14), fourth session: is the mineral-name lever's retrieval gain robust to the
# stage-2 training seed? Both the recipe and the recipe with mineral names get their stage 2
# again from the same stage-1 runs, with training seeds 1042/1043 instead of 42/43 (the *_r2_*
# configs), and the pair is compared again. Validation split only.
source benchmarks/default_model/protocol/lib.sh
stage2_pair graph_r2_s42 graph_mineral_r2_s42
stage2_pair graph_r2_s43 graph_mineral_r2_s43
stage2_pair comp_r2_s42 comp_mineral_r2_s42
stage2_pair comp_r2_s43 comp_mineral_r2_s43
merge_recipe recipe_r2 graph_r2 comp_r2
merge_recipe recipe_mineral_r2 graph_mineral_r2 comp_mineral_r2
evaluate_val recipe_r2
evaluate_val recipe_mineral_r2
compare_val recipe_mineral_r2 recipe_r2
compare_val recipe_r2 default_recipe
compare_val_both recipe_mineral_both_vs_default_recipe_both \
    recipe_mineral recipe_mineral_r2 default_recipe recipe_r2
E=$R/eval
python $P/collect.py --out benchmarks/default_model/results/protocol_val_mineral_reseed.json \
    --eval default_recipe=$E/default_recipe recipe_mineral=$E/recipe_mineral \
    recipe_r2=$E/recipe_r2 recipe_mineral_r2=$E/recipe_mineral_r2 \
    --compare recipe_mineral_r2_vs_recipe_r2=$E/compare_recipe_mineral_r2_vs_recipe_r2 \
    recipe_r2_vs_default_recipe=$E/compare_recipe_r2_vs_default_recipe \
    recipe_mineral_both_vs_default_recipe_both=$E/compare_recipe_mineral_both_vs_default_recipe_both
