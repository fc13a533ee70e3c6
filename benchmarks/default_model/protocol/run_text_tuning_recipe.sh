#!/usr/bin/env bash
# Protocol (issue 14), sixth session: the recipe around one tuned text encoder. Needs
# run_text_tuning.sh. Members of an ensemble share one encoder, so the encoder tuned in a
# composition member's stage 2 (comp_textft_s42, text_lr 2e-5, top two layers) is given to the
# other three stage-1 members (with_text_encoder.py), whose stage 2 then runs as in the recipe
# with that encoder frozen (the *_e42_* configs). The four members merge as the recipe does.
# Second draw: the encoder of comp_textft_s43 (the *_e43_* configs). The arbiter, fixed before
# this run: the decision rule on the two donors averaged against the recipe's first two stage-2
# draws averaged (default_recipe, recipe_r2). Validation split of seed 2026 only.
source benchmarks/default_model/protocol/lib.sh
# stage-1 member $1 with the text encoder of $2 (frozen), into $R/$3
with_encoder() {
  [ -d $R/$3 ] || python $P/with_text_encoder.py $R/$1 $R/$2 $R/$3
}
# one draw: the donor run comp_textft_s$1 and the composition member it does not tune, s$2
recipe_around() {
  local d=$1 o=$2 donor=comp_textft_s$1_stage2/best
  with_encoder graph_s42/best $donor graph_e${d}_s42
  with_encoder graph_s43/best $donor graph_e${d}_s43
  with_encoder comp_member_s$o/best $donor comp_e${d}_s$o
  with_encoder $donor $donor comp_textft_s${d}_frozen  # the donor itself, freeze_text: true
  stage2_pair graph_e${d}_s42 graph_e${d}_s43
  stage2 comp_e${d}_s$o
  local comps=($R/comp_textft_s${d}_frozen $R/comp_e${d}_s${o}_stage2/best)
  [ $d = 42 ] || comps=(${comps[1]} ${comps[0]})  # the recipe's order: s42, then s43
  merge $3 $R/graph_e${d}_s4{2,3}_stage2/best "${comps[@]}"
}
recipe_around 42 43 recipe_textft
recipe_around 43 42 recipe_textft_r2
evaluate_val recipe_textft & evaluate_val recipe_textft_r2 & wait
compare_val recipe_textft default_recipe
compare_val recipe_textft_r2 default_recipe
compare_val_both recipe_textft_both_vs_default_recipe_both recipe_textft recipe_textft_r2 \
    default_recipe recipe_r2
E=$R/eval
python $P/collect.py --out benchmarks/default_model/results/protocol_val_text_tuning_recipe.json \
    --eval recipe_textft=$E/recipe_textft recipe_textft_r2=$E/recipe_textft_r2 \
    --compare recipe_textft_vs_default_recipe=$E/compare_recipe_textft_vs_default_recipe \
    recipe_textft_r2_vs_default_recipe=$E/compare_recipe_textft_r2_vs_default_recipe \
    recipe_textft_both_vs_default_recipe_both=$E/compare_recipe_textft_both_vs_default_recipe_both
