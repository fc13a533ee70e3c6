# Shared steps of the protocol scripts (issue 14): `source` it from a script run at the
# repository root. Every step skips work whose output already exists, so a script can be rerun
# after an interruption; comparisons are recomputed (seconds each, same numbers).
set -euo pipefail
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
P=benchmarks/default_model/protocol
R=runs/protocol

# stage 1 (titles) of config $P/$1.yaml, into $R/$1
stage1() {
  [ -d $R/$1/best ] || matminer-clasp train $P/$1.yaml > $R/$1.log 2>&1
}

# stage 2 (keyword captions) of config $P/$1_stage2.yaml, the stage-1 split mapped by id
stage2() {
  [ -d $R/$1_stage2/best ] || python benchmarks/default_model/finetune_keywords.py \
      --pretrain-config $P/split_s2026.yaml --config $P/$1_stage2.yaml > $R/$1_stage2.log 2>&1
}

# stage 2 of two members at once (one core each)
stage2_pair() {
  stage2 "$1" & local a=$!
  stage2 "$2" & local b=$!
  wait $a && wait $b
}

# merge the members $2... into the ensemble $R/$1
merge() {
  local name=$1
  shift
  [ -d $R/$name ] || matminer-clasp merge $R/$name "$@"
}

# the recipe's shape, 2 graph + 2 composition members, from the stage-2 runs
# $R/$2_s42/s43_stage2 (graph) and $R/$3_s42/s43_stage2 (composition), into $R/$1
merge_recipe() {
  merge $1 $R/$2_s4{2,3}_stage2/best $R/$3_s4{2,3}_stage2/best
}

# evaluate_split SPLIT OUT MODEL [OPTION...]: evaluate the model folder MODEL on SPLIT of the
# seed-2026 split with both keyword sets, into OUT/<keywords> (skipped where a report exists);
# extra options go to `matminer-clasp evaluate`
evaluate_split() {
  local split=$1 out=$2 model=$3 keywords
  shift 3
  for keywords in amcsd auto; do
    [ -f $out/$keywords/report.json ] || matminer-clasp evaluate $model \
        --config $P/split_s2026.yaml --split $split --keywords $keywords --bootstrap 1000 \
        "$@" --out $out/$keywords
  done
}

# compare_runs DIR NAME "A..." "B...": paired comparison A − B of evaluated names in DIR on both
# keyword sets, each side averaged over its names on every resample, into
# DIR/compare_NAME_<keywords>.json
compare_runs() {
  local dir=$1 name=$2 keywords a b n
  for keywords in amcsd auto; do
    a=$(for n in $3; do printf '%s,' $dir/$n/$keywords; done)
    b=$(for n in $4; do printf '%s,' $dir/$n/$keywords; done)
    matminer-clasp compare ${a%,} ${b%,} --bootstrap 1000 --out $dir/compare_${name}_$keywords.json
  done
}

# evaluate the model folder $2 on the validation split with both keyword sets, into $R/eval/$1
evaluate_val_model() {
  evaluate_split val $R/eval/$1 $2
}

# evaluate $R/$1 (an ensemble or interpolated model) like evaluate_val_model, into $R/eval/$1
evaluate_val() {
  evaluate_val_model $1 $R/$1
}

# paired comparison A − B ($1, $2: evaluated names) on both keyword sets
compare_val() {
  compare_runs $R/eval ${1}_vs_${2} "$1" "$2"
}

# weights (1 - $4) x $R/$2 + $4 x $R/$3 (a stage-1 run and its stage 2), into $R/$1
interpolate() {
  [ -d $R/$1 ] || matminer-clasp interpolate $R/$1 $R/$2 $R/$3 --alpha $4
}

# evaluate $R/$1 like evaluate_val, its keywords queried through the prompt templates of
# ZeroShotClassifier, into $R/eval/$1_templates
evaluate_val_templates() {
  evaluate_split val $R/eval/$1_templates $R/$1 --templates default
}

# paired comparison with each side averaged over two runs on every resample (two stage-2 draws):
# compare_val_both NAME A1 A2 B1 B2 (evaluated names), into $R/eval/compare_NAME_<keywords>.json
compare_val_both() {
  compare_runs $R/eval $1 "$2 $3" "$4 $5"
}

# the recipe's four members interpolated and merged into $R/$1: each member is
# (1 - 0.$4) x its stage-1 run + 0.$4 x its stage-2 run $2_s42/s43 (graph) or $3_s42/s43
# (composition); e.g. `interpolate_recipe recipe_wise05 graph comp_member 05`
interpolate_recipe() {
  local name=$1 graph=$2 comp=$3 a=$4 s
  for s in 42 43; do
    interpolate wise${a}_${graph}_s$s graph_s$s/best ${graph}_s${s}_stage2/best 0.${a#0}
    interpolate wise${a}_${comp}_s$s comp_member_s$s/best ${comp}_s${s}_stage2/best 0.${a#0}
  done
  merge $name $R/wise${a}_${graph}_s4{2,3} $R/wise${a}_${comp}_s4{2,3}
}

# a screen of a lever on the recipe's two composition members: the stage-2 runs $1_s42/s43
# against comp_member_s42/s43, each side averaged over its two seeds, collected into
# benchmarks/default_model/results/protocol_val_$2.json
comp_member_screen() {
  local lever=$1 name
  local names=(comp_member_s42 comp_member_s43 ${lever}_s42 ${lever}_s43)
  for name in "${names[@]}"; do
    evaluate_val_model ${name}_stage2 $R/${name}_stage2/best &
  done
  wait
  compare_val_both ${lever}_both_vs_comp_member_both ${lever}_s42_stage2 ${lever}_s43_stage2 \
      comp_member_s42_stage2 comp_member_s43_stage2
  python $P/collect.py --out benchmarks/default_model/results/protocol_val_$2.json \
      --eval $(for name in "${names[@]}"; do echo "$name=$R/eval/${name}_stage2"; done) \
      --compare ${lever}_both_vs_comp_member_both=$R/eval/compare_${lever}_both_vs_comp_member_both
}

# evaluate $R/$1 once on the TEST split of seed 2026 with both keyword sets, into
# $R/eval_test/$1 (keywords as written) or, with a second argument `templates`,
# $R/eval_test/$1_templates (keywords through the ZeroShotClassifier templates). Only
# run_final_test.sh calls it: the test split is evaluated once, for the final candidate.
evaluate_test() {
  if [ "${2:-}" = templates ]; then
    evaluate_split test $R/eval_test/$1_templates $R/$1 --templates default
  else
    evaluate_split test $R/eval_test/$1 $R/$1
  fi
}

# compare_test NAME "A1 A2 A3" "B1 B2 B3": paired comparison on the test split, each side averaged
# over its evaluated names in $R/eval_test on every resample, into
# $R/eval_test/compare_NAME_<keywords>.json
compare_test() {
  compare_runs $R/eval_test "$@"
}
