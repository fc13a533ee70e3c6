#!/usr/bin/env bash
# Protocol (issue 14), third session, lever: member count on the composition side. The shipped
# recipe (run_default_recipe.sh: graph_s42/s43 + comp_member_s42/s43, both stages) is retrained
# in this session, then compared with the recipe plus two more composition members
# (comp_member_s44/s45): 2 graph + 4 composition members. A composition member costs almost
# nothing at featurization (an MLP on the element fractions). Validation split only.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol
stage2() {
  python benchmarks/default_model/finetune_keywords.py --pretrain-config $P/split_s2026.yaml \
      --config "$1"
}
# the shipped recipe, as in run_default_recipe.sh (its numbers of the second session are not
# rewritten: this session's go to protocol_val_comp_members.json)
for member in graph_s42 graph_s43 comp_member_s42 comp_member_s43 comp_member_s44 \
              comp_member_s45; do
  [ -d $R/$member/best ] || matminer-clasp train $P/$member.yaml
  [ -d $R/${member}_stage2/best ] || stage2 $P/${member}_stage2.yaml
done
[ -d $R/default_recipe ] || matminer-clasp merge $R/default_recipe \
    $R/graph_s4{2,3}_stage2/best $R/comp_member_s4{2,3}_stage2/best
for keywords in amcsd auto; do
  [ -f $R/eval/default_recipe/$keywords/report.json ] || matminer-clasp evaluate \
      $R/default_recipe --config $P/split_s2026.yaml --split val --keywords $keywords \
      --bootstrap 1000 --out $R/eval/default_recipe/$keywords
done
[ -d $R/recipe_2g4c ] || matminer-clasp merge $R/recipe_2g4c $R/graph_s4{2,3}_stage2/best \
    $R/comp_member_s4{2,3,4,5}_stage2/best
for keywords in amcsd auto; do
  [ -f $R/eval/recipe_2g4c/$keywords/report.json ] || matminer-clasp evaluate $R/recipe_2g4c \
      --config $P/split_s2026.yaml --split val --keywords $keywords --bootstrap 1000 \
      --out $R/eval/recipe_2g4c/$keywords
  matminer-clasp compare $R/eval/recipe_2g4c/$keywords $R/eval/default_recipe/$keywords \
      --bootstrap 1000 --out $R/eval/compare_recipe_2g4c_vs_default_recipe_$keywords.json
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_comp_members.json \
    --eval default_recipe=$R/eval/default_recipe recipe_2g4c=$R/eval/recipe_2g4c \
    --compare recipe_2g4c_vs_default_recipe=$R/eval/compare_recipe_2g4c_vs_default_recipe
