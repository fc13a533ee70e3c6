#!/usr/bin/env bash
# Protocol (issue 14), fourth session: mineral-name keyword captions (run_mineral_keywords.sh)
# together with a third graph member, in two draws (seeds 44 and 45, as in the second session's
# member-count lever): 3 graph + 4 composition members, all with the lever in stage 2, compared
# with 2 graph + 4 composition members with the lever, and with the recipe (default_recipe).
# Validation split only.
source benchmarks/default_model/protocol/lib.sh
[ -d $R/recipe_mineral_2g4c ] || { echo "run run_mineral_keywords.sh first" >&2; exit 1; }
{ stage1 graph_s44 && stage2 graph_mineral_s44; } & a=$!
{ stage1 graph_s45 && stage2 graph_mineral_s45; } & b=$!
wait $a && wait $b
for third in 44 45; do
  name=recipe_mineral_3g4c_s$third
  merge $name $R/graph_mineral_s4{2,3}_stage2/best $R/graph_mineral_s${third}_stage2/best \
      $R/comp_mineral_s4{2,3,4,5}_stage2/best
  evaluate_val $name
  compare_val $name recipe_mineral_2g4c
  compare_val $name default_recipe
done
E=$R/eval
python $P/collect.py --out benchmarks/default_model/results/protocol_val_mineral_members.json \
    --eval default_recipe=$E/default_recipe recipe_mineral_2g4c=$E/recipe_mineral_2g4c \
    recipe_mineral_3g4c_s44=$E/recipe_mineral_3g4c_s44 \
    recipe_mineral_3g4c_s45=$E/recipe_mineral_3g4c_s45 \
    --compare $(for t in 44 45; do for b in recipe_mineral_2g4c default_recipe; do
                  echo "recipe_mineral_3g4c_s${t}_vs_$b=$E/compare_recipe_mineral_3g4c_s${t}_vs_$b"
                done; done)
# the label-noise audit of the amcsd keywords (mineral groups the titles miss; formula rules)
python $P/label_noise.py $E/default_recipe/amcsd $E/recipe_2g4c/amcsd $E/recipe_mineral/amcsd \
    $E/recipe_mineral_2g4c/amcsd $E/recipe_mineral_3g4c_s44/amcsd \
    $E/recipe_mineral_3g4c_s45/amcsd \
    --out benchmarks/default_model/results/protocol_val_label_noise.json
