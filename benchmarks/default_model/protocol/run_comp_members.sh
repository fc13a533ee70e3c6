#!/usr/bin/env bash
# Protocol (issue 14), third session, lever: member count on the composition side. The shipped
# recipe (run_default_recipe.sh: graph_s42/s43 + comp_member_s42/s43, both stages) is retrained
# in this session, then compared with the recipe plus two more composition members
# (comp_member_s44/s45): 2 graph + 4 composition members. A composition member costs almost
# nothing at featurization (an MLP on the element fractions). Validation split only.
source benchmarks/default_model/protocol/lib.sh
# the shipped recipe, as in run_default_recipe.sh (its numbers of the second session are not
# rewritten: this session's go to protocol_val_comp_members.json)
for member in graph_s42 graph_s43 comp_member_s4{2,3,4,5}; do
  stage1 $member
  stage2 $member
done
merge_recipe default_recipe graph comp_member
merge recipe_2g4c $R/graph_s4{2,3}_stage2/best $R/comp_member_s4{2,3,4,5}_stage2/best
evaluate_val default_recipe
evaluate_val recipe_2g4c
compare_val recipe_2g4c default_recipe
python $P/collect.py --out benchmarks/default_model/results/protocol_val_comp_members.json \
    --eval default_recipe=$R/eval/default_recipe recipe_2g4c=$R/eval/recipe_2g4c \
    --compare recipe_2g4c_vs_default_recipe=$R/eval/compare_recipe_2g4c_vs_default_recipe
