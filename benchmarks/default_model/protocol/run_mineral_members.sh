#!/usr/bin/env bash
# Protocol (issue 14), fourth session: mineral-name keyword captions (run_mineral_keywords.sh)
# together with a third graph member, in two draws (seeds 44 and 45, as in the second session's
# member-count lever): 3 graph + 4 composition members, all with the lever in stage 2, compared
# with 2 graph + 4 composition members with the lever. Validation split only.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol
stage1() {
  [ -d $R/$1/best ] || matminer-clasp train $P/$1.yaml > $R/$1.log 2>&1
}
stage2() {
  [ -d $R/$1_stage2/best ] || python benchmarks/default_model/finetune_keywords.py \
      --pretrain-config $P/split_s2026.yaml --config $P/$1_stage2.yaml > $R/$1_stage2.log 2>&1
}
[ -d $R/recipe_mineral_2g4c ] || { echo "run run_mineral_keywords.sh first" >&2; exit 1; }
{ stage1 graph_s44 && stage2 graph_mineral_s44; } & a=$!
{ stage1 graph_s45 && stage2 graph_mineral_s45; } & b=$!
wait $a && wait $b
for third in 44 45; do
  name=recipe_mineral_3g4c_s$third
  [ -d $R/$name ] || matminer-clasp merge $R/$name $R/graph_mineral_s4{2,3}_stage2/best \
      $R/graph_mineral_s${third}_stage2/best $R/comp_mineral_s4{2,3,4,5}_stage2/best
  for keywords in amcsd auto; do
    [ -f $R/eval/$name/$keywords/report.json ] || matminer-clasp evaluate $R/$name \
        --config $P/split_s2026.yaml --split val --keywords $keywords --bootstrap 1000 \
        --out $R/eval/$name/$keywords
    for base in recipe_mineral_2g4c default_recipe; do
      matminer-clasp compare $R/eval/$name/$keywords $R/eval/$base/$keywords \
          --bootstrap 1000 --out $R/eval/compare_${name}_vs_${base}_$keywords.json
    done
  done
done
E=$R/eval
python $P/collect.py --out benchmarks/default_model/results/protocol_val_mineral_members.json \
    --eval default_recipe=$E/default_recipe recipe_mineral_2g4c=$E/recipe_mineral_2g4c \
    recipe_mineral_3g4c_s44=$E/recipe_mineral_3g4c_s44 \
    recipe_mineral_3g4c_s45=$E/recipe_mineral_3g4c_s45 \
    --compare \
    recipe_mineral_3g4c_s44_vs_recipe_mineral_2g4c=$E/compare_recipe_mineral_3g4c_s44_vs_recipe_mineral_2g4c \
    recipe_mineral_3g4c_s45_vs_recipe_mineral_2g4c=$E/compare_recipe_mineral_3g4c_s45_vs_recipe_mineral_2g4c \
    recipe_mineral_3g4c_s44_vs_default_recipe=$E/compare_recipe_mineral_3g4c_s44_vs_default_recipe \
    recipe_mineral_3g4c_s45_vs_default_recipe=$E/compare_recipe_mineral_3g4c_s45_vs_default_recipe
