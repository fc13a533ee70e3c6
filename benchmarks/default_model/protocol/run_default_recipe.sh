#!/usr/bin/env bash
# Protocol (issue 14), second part: the shipped four-member recipe retrained on the seed-2026
# split, the baseline every lever is compared with. Run from the repository root after run.sh's
# composition baselines (split_s2026.yaml, composition_s43.yaml and their stage 2; 768-d). About
# 25 min per graph member and 5 per composition member on one core; two runs can go at once.
# Validation split only (--split val); nothing here evaluates the test split.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol
stage2() {
  python benchmarks/default_model/finetune_keywords.py --pretrain-config $P/split_s2026.yaml \
      --config "$1"
}
# the recipe's members, 192-d each: two graph members (CGCNN + composition + space group) and two
# composition members
for member in graph_s42 graph_s43 comp_member_s42 comp_member_s43; do
  [ -d $R/$member/best ] || matminer-clasp train $P/$member.yaml
  [ -d $R/${member}_stage2/best ] || stage2 $P/${member}_stage2.yaml
done

# the recipe (2 graph + 2 composition members), and its halves
[ -d $R/default_recipe ] || matminer-clasp merge $R/default_recipe \
    $R/graph_s4{2,3}_stage2/best $R/comp_member_s4{2,3}_stage2/best
[ -d $R/graph_pair ] || matminer-clasp merge $R/graph_pair $R/graph_s4{2,3}_stage2/best
[ -d $R/comp_pair ] || matminer-clasp merge $R/comp_pair $R/comp_member_s4{2,3}_stage2/best

declare -A MODEL=([default_recipe]=$R/default_recipe [graph_pair]=$R/graph_pair
                  [comp_pair]=$R/comp_pair [graph_s42]=$R/graph_s42_stage2/best
                  [graph_s43]=$R/graph_s43_stage2/best
                  [composition_stage2]=$R/composition_stage2/best
                  [composition_s43_stage2]=$R/composition_s43_stage2/best)
for name in "${!MODEL[@]}"; do
  for keywords in amcsd auto; do
    [ -f $R/eval/$name/$keywords/report.json ] || matminer-clasp evaluate "${MODEL[$name]}" \
        --config $P/split_s2026.yaml --split val --keywords $keywords --bootstrap 1000 \
        --out $R/eval/$name/$keywords
  done
done
for keywords in amcsd auto; do
  for pair in default_recipe:comp_pair default_recipe:graph_pair graph_pair:comp_pair \
              graph_s43:graph_s42 default_recipe:composition_stage2; do
    a=${pair%%:*} b=${pair#*:}
    matminer-clasp compare $R/eval/$a/$keywords $R/eval/$b/$keywords --bootstrap 1000 \
        --out $R/eval/compare_${a}_vs_${b}_$keywords.json
  done
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_default_recipe.json \
    --eval $(for name in "${!MODEL[@]}"; do echo "$name=$R/eval/$name"; done) \
    --compare $(for pair in default_recipe_vs_comp_pair default_recipe_vs_graph_pair \
                            graph_pair_vs_comp_pair graph_s43_vs_graph_s42 \
                            default_recipe_vs_composition_stage2; do
                  echo "$pair=$R/eval/compare_$pair"; done)
