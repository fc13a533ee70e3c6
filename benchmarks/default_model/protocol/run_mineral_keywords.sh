#!/usr/bin/env bash
# Protocol (issue 14), fourth session, lever: mineral names in the keyword captions (stage 2).
# Each entry's mineral name (AMCSD's `mineral` field; formula-like names skipped) becomes the
# first keyword of its stage-2 caption (`DataConfig.mineral_keywords`). Stage 1 is unchanged:
# the members' stage 2 starts from the stage-1 runs of run_comp_members.sh, and the merged
# recipes are compared with the same recipes without the lever, retrained in the same session
# (default_recipe: 2 graph + 2 composition members; recipe_2g4c: 2 graph + 4 composition).
# Validation split only.
source benchmarks/default_model/protocol/lib.sh
for member in graph_s42 graph_s43 comp_member_s42 comp_member_s43 comp_member_s44 \
              comp_member_s45; do
  [ -d $R/$member/best ] || { echo "stage 1 of $member missing: run run_comp_members.sh" >&2; exit 1; }
done
stage2_pair graph_mineral_s42 graph_mineral_s43
stage2_pair comp_mineral_s42 comp_mineral_s43
stage2_pair comp_mineral_s44 comp_mineral_s45
merge_recipe recipe_mineral graph_mineral comp_mineral
merge recipe_mineral_2g4c $R/graph_mineral_s4{2,3}_stage2/best \
    $R/comp_mineral_s4{2,3,4,5}_stage2/best
evaluate_val recipe_mineral
evaluate_val recipe_mineral_2g4c
compare_val recipe_mineral default_recipe
compare_val recipe_mineral_2g4c default_recipe
compare_val recipe_mineral_2g4c recipe_2g4c
E=$R/eval
python $P/collect.py --out benchmarks/default_model/results/protocol_val_mineral_keywords.json \
    --eval default_recipe=$E/default_recipe recipe_mineral=$E/recipe_mineral \
    recipe_2g4c=$E/recipe_2g4c recipe_mineral_2g4c=$E/recipe_mineral_2g4c \
    --compare recipe_mineral_vs_default_recipe=$E/compare_recipe_mineral_vs_default_recipe \
    recipe_mineral_2g4c_vs_default_recipe=$E/compare_recipe_mineral_2g4c_vs_default_recipe \
    recipe_mineral_2g4c_vs_recipe_2g4c=$E/compare_recipe_mineral_2g4c_vs_recipe_2g4c
# German and French titles separately (the text encoder is English-only; mineral names are not)
python $P/by_language.py $E/default_recipe/amcsd $E/recipe_mineral/amcsd \
    $E/recipe_2g4c/amcsd $E/recipe_mineral_2g4c/amcsd \
    --out benchmarks/default_model/results/protocol_val_mineral_by_language.json
