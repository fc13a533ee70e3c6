#!/usr/bin/env bash
# Protocol (issue 14), fifth session: a third stage-2 draw (seeds 2042/2043) of the recipe and of
# the recipe with keyword sampling, from the same stage-1 runs. Run because the two draws of
# run_keyword_sampling.sh were borderline on `auto` AP (+0.070 [-0.002, +0.096] over both). The
# arbiter, fixed before this run: the same rule on the mean of all three draws on each side.
# Validation split of seed 2026 only. Needs run_keyword_sampling.sh's evaluations.
source benchmarks/default_model/protocol/lib.sh
stage2_pair graph_r3_s42 graph_r3_s43
stage2_pair graph_ksamp_r3_s42 graph_ksamp_r3_s43
stage2_pair comp_r3_s42 comp_r3_s43
stage2_pair comp_ksamp_r3_s42 comp_ksamp_r3_s43
merge_recipe recipe_r3 graph_r3 comp_r3
merge_recipe recipe_ksamp_r3 graph_ksamp_r3 comp_ksamp_r3
evaluate_val recipe_r3 & evaluate_val recipe_ksamp_r3 & wait
compare_val recipe_ksamp_r3 recipe_r3
compare_val recipe_r3 default_recipe
E=$R/eval
compare_runs $E recipe_ksamp_three_vs_default_recipe_three \
    "recipe_ksamp recipe_ksamp_r2 recipe_ksamp_r3" "default_recipe recipe_r2 recipe_r3"
python $P/collect.py --out benchmarks/default_model/results/protocol_val_keyword_sampling_r3.json \
    --eval recipe_r3=$E/recipe_r3 recipe_ksamp_r3=$E/recipe_ksamp_r3 \
    --compare recipe_ksamp_r3_vs_recipe_r3=$E/compare_recipe_ksamp_r3_vs_recipe_r3 \
    recipe_r3_vs_default_recipe=$E/compare_recipe_r3_vs_default_recipe \
    recipe_ksamp_three_vs_default_recipe_three=$E/compare_recipe_ksamp_three_vs_default_recipe_three
