#!/usr/bin/env bash
# Protocol (issue 14), fourth session, lever: mineral names in the keyword captions (stage 2).
# Each entry's mineral name (AMCSD's `mineral` field; formula-like names skipped) becomes the
# first keyword of its stage-2 caption (`DataConfig.mineral_keywords`). Stage 1 is unchanged:
# the four members' stage 2 starts from the stage-1 runs of run_comp_members.sh, and the merged
# recipe is compared with the shipped recipe retrained in the same session (default_recipe).
# Validation split only; two members run at a time, one core each.
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol
stage2() {
  [ -d $R/$1_stage2/best ] || python benchmarks/default_model/finetune_keywords.py \
      --pretrain-config $P/split_s2026.yaml --config $P/$1_stage2.yaml > $R/$1_stage2.log 2>&1
}
both() {
  stage2 "$1" & a=$!
  stage2 "$2" & b=$!
  wait $a && wait $b
}
for member in graph_s42 graph_s43 comp_member_s42 comp_member_s43; do
  [ -d $R/$member/best ] || { echo "stage 1 of $member missing: run run_comp_members.sh" >&2; exit 1; }
done
mkdir -p $R
both graph_mineral_s42 graph_mineral_s43
both comp_mineral_s42 comp_mineral_s43
[ -d $R/recipe_mineral ] || matminer-clasp merge $R/recipe_mineral \
    $R/graph_mineral_s4{2,3}_stage2/best $R/comp_mineral_s4{2,3}_stage2/best
for keywords in amcsd auto; do
  [ -f $R/eval/recipe_mineral/$keywords/report.json ] || matminer-clasp evaluate \
      $R/recipe_mineral --config $P/split_s2026.yaml --split val --keywords $keywords \
      --bootstrap 1000 --out $R/eval/recipe_mineral/$keywords
  matminer-clasp compare $R/eval/recipe_mineral/$keywords $R/eval/default_recipe/$keywords \
      --bootstrap 1000 --out $R/eval/compare_recipe_mineral_vs_default_recipe_$keywords.json
done
# the same lever on the two extra composition members of run_comp_members.sh (2 graph + 4
# composition), compared with that recipe without the lever and with the recipe of this script
both comp_mineral_s44 comp_mineral_s45
[ -d $R/recipe_mineral_2g4c ] || matminer-clasp merge $R/recipe_mineral_2g4c \
    $R/graph_mineral_s4{2,3}_stage2/best $R/comp_mineral_s4{2,3,4,5}_stage2/best
for keywords in amcsd auto; do
  [ -f $R/eval/recipe_mineral_2g4c/$keywords/report.json ] || matminer-clasp evaluate \
      $R/recipe_mineral_2g4c --config $P/split_s2026.yaml --split val --keywords $keywords \
      --bootstrap 1000 --out $R/eval/recipe_mineral_2g4c/$keywords
  for base in default_recipe recipe_2g4c; do
    matminer-clasp compare $R/eval/recipe_mineral_2g4c/$keywords $R/eval/$base/$keywords \
        --bootstrap 1000 --out $R/eval/compare_recipe_mineral_2g4c_vs_${base}_$keywords.json
  done
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_mineral_keywords.json \
    --eval default_recipe=$R/eval/default_recipe recipe_mineral=$R/eval/recipe_mineral \
    recipe_2g4c=$R/eval/recipe_2g4c recipe_mineral_2g4c=$R/eval/recipe_mineral_2g4c \
    --compare recipe_mineral_vs_default_recipe=$R/eval/compare_recipe_mineral_vs_default_recipe \
    recipe_mineral_2g4c_vs_default_recipe=$R/eval/compare_recipe_mineral_2g4c_vs_default_recipe \
    recipe_mineral_2g4c_vs_recipe_2g4c=$R/eval/compare_recipe_mineral_2g4c_vs_recipe_2g4c
# German and French titles separately (the text encoder is English-only; mineral names are not)
python $P/by_language.py $R/eval/default_recipe/amcsd $R/eval/recipe_mineral/amcsd \
    $R/eval/recipe_2g4c/amcsd $R/eval/recipe_mineral_2g4c/amcsd \
    --out benchmarks/default_model/results/protocol_val_mineral_by_language.json
