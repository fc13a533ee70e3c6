#!/usr/bin/env bash
# Protocol (issue 14), fifth session: two levers that need no training.
#
# 1. Weight interpolation (WiSE-FT): every member of the recipe becomes
#    (1 - alpha) x its stage-1 run (titles) + alpha x its stage 2 (keywords), then the members
#    are merged as before. alpha = 0.5 was the candidate fixed before any number; 0.25 and 0.75
#    were run with it to show the curve, and alpha = 0 (the stage-1 runs merged) is its end.
#    A second stage-2 draw (the *_r2_* runs) and the recipe with mineral names test it again.
# 2. Prompt templates at query time: `evaluate --templates default` queries every keyword
#    variation as the centroid of ZeroShotClassifier's default templates (fixed on 2026-11-25,
#    before this split existed) instead of as written. No template was tuned here.
#
# Validation split of seed 2026 only. Reuses the stage-1 and stage-2 runs of the third and fourth
# sessions (run_comp_members.sh, run_mineral_keywords.sh, run_mineral_reseed.sh).
source benchmarks/default_model/protocol/lib.sh

# 1. interpolated members and their ensembles
for a in 025 05 075; do interpolate_recipe recipe_wise$a graph comp_member $a; done
merge recipe_stage1 $R/graph_s4{2,3}/best $R/comp_member_s4{2,3}/best
interpolate_recipe recipe_r2_wise05 graph_r2 comp_r2 05
interpolate_recipe recipe_mineral_wise05 graph_mineral comp_mineral 05

# evaluations, two at a time (one core each)
evaluate_val recipe_wise05 & evaluate_val recipe_wise025 & wait
evaluate_val recipe_wise075 & evaluate_val recipe_stage1 & wait
evaluate_val recipe_r2_wise05 & evaluate_val recipe_mineral_wise05 & wait
evaluate_val_templates default_recipe & evaluate_val_templates recipe_r2 & wait
evaluate_val_templates recipe_wise05 & evaluate_val_templates recipe_r2_wise05 & wait
evaluate_val_templates recipe_2g4c

# comparisons
for a in 025 05 075; do compare_val recipe_wise$a default_recipe; done
compare_val recipe_stage1 default_recipe
compare_val recipe_r2_wise05 recipe_r2
compare_val recipe_mineral_wise05 recipe_mineral
compare_val recipe_mineral_wise05 default_recipe
compare_val default_recipe_templates default_recipe
compare_val recipe_r2_templates recipe_r2
compare_val recipe_wise05_templates default_recipe_templates
compare_val recipe_2g4c_templates default_recipe_templates
compare_val_both recipe_wise05_both_vs_default_recipe_both \
    recipe_wise05 recipe_r2_wise05 default_recipe recipe_r2
compare_val_both recipe_templates_both_vs_default_recipe_both \
    default_recipe_templates recipe_r2_templates default_recipe recipe_r2
compare_val_both recipe_wise05_templates_both_vs_default_recipe_both \
    recipe_wise05_templates recipe_r2_wise05_templates default_recipe recipe_r2
E=$R/eval

names="default_recipe recipe_r2 recipe_mineral recipe_2g4c recipe_stage1 recipe_wise025"
names="$names recipe_wise05 recipe_wise075 recipe_r2_wise05 recipe_mineral_wise05"
names="$names default_recipe_templates recipe_r2_templates recipe_wise05_templates"
names="$names recipe_r2_wise05_templates recipe_2g4c_templates"
pairs="recipe_wise025_vs_default_recipe recipe_wise05_vs_default_recipe"
pairs="$pairs recipe_wise075_vs_default_recipe recipe_stage1_vs_default_recipe"
pairs="$pairs recipe_r2_wise05_vs_recipe_r2 recipe_wise05_both_vs_default_recipe_both"
pairs="$pairs recipe_mineral_wise05_vs_recipe_mineral recipe_mineral_wise05_vs_default_recipe"
pairs="$pairs default_recipe_templates_vs_default_recipe recipe_r2_templates_vs_recipe_r2"
pairs="$pairs recipe_templates_both_vs_default_recipe_both"
pairs="$pairs recipe_wise05_templates_vs_default_recipe_templates"
pairs="$pairs recipe_2g4c_templates_vs_default_recipe_templates"
pairs="$pairs recipe_wise05_templates_both_vs_default_recipe_both"
python $P/collect.py --out benchmarks/default_model/results/protocol_val_interpolation.json \
    --eval $(for n in $names; do echo $n=$E/$n; done) \
    --compare $(for c in $pairs; do echo $c=$E/compare_$c; done)
