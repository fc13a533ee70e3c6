#!/usr/bin/env bash
# Protocol (issue 14), seventh session, after the test split was spent: a uniform "soup" of the
# recipe's three stage-2 draws. Each member's three stage-2 runs start from the same stage-1
# run, so their weights can be averaged (weight interpolation, fifth session, with three ends):
# the soup keeps the member count, so featurization speed is unchanged. No training.
# Validation split of seed 2026 only; the seed-2026 test split is spent, so a soup that passes
# would need a new split (seed 2027) for its test.
# Arbiter, fixed before the run: the decision rule on the soup against the recipe with its
# three stage-2 draws averaged on every resample.
source benchmarks/default_model/protocol/lib.sh
soup_member() {  # soup_member NAME DRAW1 DRAW2 DRAW3 (run folders under $R)
  interpolate ${1}_half $2/best $3/best 0.5           # (d1 + d2) / 2
  [ -d $R/$1 ] || matminer-clasp interpolate $R/$1 $R/${1}_half $R/$4/best --alpha 0.3333333333
}
for s in 42 43; do
  soup_member soup_graph_s$s graph_s${s}_stage2 graph_r2_s${s}_stage2 graph_r3_s${s}_stage2
  soup_member soup_comp_s$s comp_member_s${s}_stage2 comp_r2_s${s}_stage2 comp_r3_s${s}_stage2
done
merge recipe_soup $R/soup_graph_s4{2,3} $R/soup_comp_s4{2,3}
evaluate_val recipe_soup
E=$R/eval
compare_runs $E recipe_soup_vs_recipe_three recipe_soup "default_recipe recipe_r2 recipe_r3"
python $P/collect.py --out benchmarks/default_model/results/protocol_val_soup.json \
    --eval recipe_soup=$E/recipe_soup \
    --compare recipe_soup_vs_recipe_three=$E/compare_recipe_soup_vs_recipe_three
