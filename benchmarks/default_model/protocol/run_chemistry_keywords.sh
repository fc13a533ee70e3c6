#!/usr/bin/env bash
# Protocol (issue 14), fourth session, lever: the chemical class in the keyword captions (stage 2).
# Each entry's class from its formula ("silicate", "sulfide", "oxide", ...) joins its stage-2
# caption (`DataConfig.chemistry_keywords`). Stage 1 is unchanged: the four members' stage 2
# starts from the stage-1 runs of run_comp_members.sh, and the merged recipe is compared with the
# shipped recipe retrained in the same session (default_recipe). Validation split only.
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
both graph_chem_s42 graph_chem_s43
both comp_chem_s42 comp_chem_s43
[ -d $R/recipe_chem ] || matminer-clasp merge $R/recipe_chem \
    $R/graph_chem_s4{2,3}_stage2/best $R/comp_chem_s4{2,3}_stage2/best
for keywords in amcsd auto; do
  [ -f $R/eval/recipe_chem/$keywords/report.json ] || matminer-clasp evaluate \
      $R/recipe_chem --config $P/split_s2026.yaml --split val --keywords $keywords \
      --bootstrap 1000 --out $R/eval/recipe_chem/$keywords
  matminer-clasp compare $R/eval/recipe_chem/$keywords $R/eval/default_recipe/$keywords \
      --bootstrap 1000 --out $R/eval/compare_recipe_chem_vs_default_recipe_$keywords.json
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_chemistry_keywords.json \
    --eval default_recipe=$R/eval/default_recipe recipe_chem=$R/eval/recipe_chem \
    --compare recipe_chem_vs_default_recipe=$R/eval/compare_recipe_chem_vs_default_recipe
