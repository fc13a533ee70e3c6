#!/usr/bin/env bash
# Protocol (issue 14), second part: the shipped four-member recipe retrained on the seed-2026
# split, the baseline every lever is compared with. Run from the repository root after run.sh's
# composition baselines (split_s2026.yaml, composition_s43.yaml and their stage 2; 768-d). About
# 25 min per graph member and 5 per composition member on one core; two runs can go at once.
# Validation split only (--split val); nothing here evaluates the test split.
source benchmarks/default_model/protocol/lib.sh
# the recipe's members, 192-d each: two graph members (CGCNN + composition + space group) and two
# composition members
for member in graph_s42 graph_s43 comp_member_s42 comp_member_s43; do
  stage1 $member
  stage2 $member
done

# the recipe (2 graph + 2 composition members), and its halves
merge_recipe default_recipe graph comp_member
merge graph_pair $R/graph_s4{2,3}_stage2/best
merge comp_pair $R/comp_member_s4{2,3}_stage2/best
for name in default_recipe graph_pair comp_pair; do
  evaluate_val $name
done
# single runs after both stages (their stage-1 evaluations are under the plain run names)
for run in graph_s42_stage2 graph_s43_stage2 composition_stage2 composition_s43_stage2; do
  evaluate_val_model $run $R/$run/best
done
PAIRS=(default_recipe:comp_pair default_recipe:graph_pair graph_pair:comp_pair
       graph_s43_stage2:graph_s42_stage2 default_recipe:composition_stage2)
for pair in "${PAIRS[@]}"; do
  compare_val ${pair%%:*} ${pair#*:}
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_default_recipe.json \
    --eval $(for name in default_recipe graph_pair comp_pair graph_s42_stage2 graph_s43_stage2 \
                         composition_stage2 composition_s43_stage2; do
               echo "$name=$R/eval/$name"; done) \
    --compare $(for pair in "${PAIRS[@]}"; do
                  c=${pair%%:*}_vs_${pair#*:}; echo "$c=$R/eval/compare_$c"; done)
