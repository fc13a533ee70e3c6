#!/usr/bin/env bash
# Protocol (issue 14), fifth session: keyword sampling in stage 2. A zero-shot query is one word;
# a stage-2 caption is a list of keywords. With `keyword_sampling: 0.5` (fixed before any run),
# each epoch each training caption is, with probability 0.5, one of its keywords drawn uniformly,
# else the whole list; validation keeps the whole captions. Every member starts from the same
# stage-1 run as the recipe, in two stage-2 draws (seeds 42/43 and 1042/1043), each compared with
# the recipe of the same draw, keywords as written and through the prompt templates.
# Validation split of seed 2026 only. Needs run_interpolation_templates.sh's evaluations.
source benchmarks/default_model/protocol/lib.sh
stage2_pair graph_ksamp_s42 graph_ksamp_s43
stage2_pair comp_ksamp_s42 comp_ksamp_s43
merge_recipe recipe_ksamp graph_ksamp comp_ksamp
evaluate_val recipe_ksamp & evaluate_val_templates recipe_ksamp & wait
compare_val recipe_ksamp default_recipe
compare_val recipe_ksamp_templates default_recipe_templates

stage2_pair graph_ksamp_r2_s42 graph_ksamp_r2_s43
stage2_pair comp_ksamp_r2_s42 comp_ksamp_r2_s43
merge_recipe recipe_ksamp_r2 graph_ksamp_r2 comp_ksamp_r2
evaluate_val recipe_ksamp_r2 & evaluate_val_templates recipe_ksamp_r2 & wait
compare_val recipe_ksamp_r2 recipe_r2
compare_val recipe_ksamp_r2_templates recipe_r2_templates

compare_val_both recipe_ksamp_both_vs_default_recipe_both \
    recipe_ksamp recipe_ksamp_r2 default_recipe recipe_r2
compare_val_both recipe_ksamp_templates_both_vs_default_recipe_templates_both \
    recipe_ksamp_templates recipe_ksamp_r2_templates default_recipe_templates recipe_r2_templates

# Combined after the first draw's numbers (not fixed beforehand): keyword sampling lost
# retrieval, which weight interpolation buys back; alpha = 0.5 as before, both draws.
interpolate_recipe recipe_ksamp_wise05 graph_ksamp comp_ksamp 05
interpolate_recipe recipe_ksamp_r2_wise05 graph_ksamp_r2 comp_ksamp_r2 05
evaluate_val recipe_ksamp_wise05 & evaluate_val recipe_ksamp_r2_wise05 & wait
evaluate_val_templates recipe_ksamp_wise05 & evaluate_val_templates recipe_ksamp_r2_wise05 & wait
compare_val recipe_ksamp_wise05 default_recipe
compare_val recipe_ksamp_r2_wise05 recipe_r2
compare_val_both recipe_ksamp_wise05_both_vs_default_recipe_both \
    recipe_ksamp_wise05 recipe_ksamp_r2_wise05 default_recipe recipe_r2
compare_val_both recipe_ksamp_wise05_templates_both_vs_default_recipe_both \
    recipe_ksamp_wise05_templates recipe_ksamp_r2_wise05_templates default_recipe recipe_r2
E=$R/eval

python $P/collect.py --out benchmarks/default_model/results/protocol_val_keyword_sampling.json \
    --eval default_recipe=$E/default_recipe recipe_r2=$E/recipe_r2 \
    default_recipe_templates=$E/default_recipe_templates \
    recipe_r2_templates=$E/recipe_r2_templates recipe_ksamp=$E/recipe_ksamp \
    recipe_ksamp_r2=$E/recipe_ksamp_r2 recipe_ksamp_templates=$E/recipe_ksamp_templates \
    recipe_ksamp_r2_templates=$E/recipe_ksamp_r2_templates \
    recipe_ksamp_wise05=$E/recipe_ksamp_wise05 recipe_ksamp_r2_wise05=$E/recipe_ksamp_r2_wise05 \
    recipe_ksamp_wise05_templates=$E/recipe_ksamp_wise05_templates \
    recipe_ksamp_r2_wise05_templates=$E/recipe_ksamp_r2_wise05_templates \
    --compare recipe_ksamp_vs_default_recipe=$E/compare_recipe_ksamp_vs_default_recipe \
    recipe_ksamp_templates_vs_default_recipe_templates=$E/compare_recipe_ksamp_templates_vs_default_recipe_templates \
    recipe_ksamp_r2_vs_recipe_r2=$E/compare_recipe_ksamp_r2_vs_recipe_r2 \
    recipe_ksamp_r2_templates_vs_recipe_r2_templates=$E/compare_recipe_ksamp_r2_templates_vs_recipe_r2_templates \
    recipe_ksamp_both_vs_default_recipe_both=$E/compare_recipe_ksamp_both_vs_default_recipe_both \
    recipe_ksamp_templates_both_vs_default_recipe_templates_both=$E/compare_recipe_ksamp_templates_both_vs_default_recipe_templates_both \
    recipe_ksamp_wise05_vs_default_recipe=$E/compare_recipe_ksamp_wise05_vs_default_recipe \
    recipe_ksamp_r2_wise05_vs_recipe_r2=$E/compare_recipe_ksamp_r2_wise05_vs_recipe_r2 \
    recipe_ksamp_wise05_both_vs_default_recipe_both=$E/compare_recipe_ksamp_wise05_both_vs_default_recipe_both \
    recipe_ksamp_wise05_templates_both_vs_default_recipe_both=$E/compare_recipe_ksamp_wise05_templates_both_vs_default_recipe_both
