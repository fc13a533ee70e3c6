#!/usr/bin/env bash
# Protocol (issue 14), seventh session: the ONE evaluation of the seed-2026 test split.
#
# Written and committed before any test number was seen. Nothing below may change after the run
# except to fix a crash; a changed line is named in the report.
#
# Why now. Six sessions measured every lever of the issue and seven more on validation (the
# ablation table in docs/model-report.md). No model-side lever raised `amcsd` ROC-AUC or AP with
# an interval above zero; an exploration at the start of this session (query expansion through
# the training pairs, and a hubness correction of the scores; validation only, numbers in the
# report) did not either. Keeping the split for a lever nobody has found costs more than it
# buys: a later lever can fix a new split (seed 2027) and retrain its baseline in about an hour.
#
# The candidate, fixed on validation: the recipe (2 graph + 2 composition members, titles then
# keywords) with keyword sampling 0.5 in stage 2 (fifth session). It is the one model-side lever
# the rule kept on a keyword metric (`auto` AP +0.068 [+0.002, +0.094] over three stage-2 draws),
# and the only one with gains on both `amcsd` metrics (+0.011 / +0.005, intervals across zero).
# Its three stage-2 draws (recipe_ksamp, _r2, _r3) face the recipe's three (default_recipe,
# recipe_r2, recipe_r3): the current default trained the same way on this split. The
# composition-only baseline trained the same way is the candidate's two composition members of
# each draw, merged (comp_ksamp, _r2, _r3).
#
# Arbiter, all on the test split of seed 2026, per structure, each side averaged over its three
# draws on every resample (1000 resamples of titles):
#   1. The issue's done-when (primary), keywords as written (the official protocol, and the
#      protocol of every target): the intervals of the `amcsd` ROC-AUC and AP gains over the
#      recipe both exclude zero above, and the mean of the candidate's three draws reaches
#      `amcsd` ROC-AUC >= 0.94, AP >= 0.45 and text->structure recall@10 >= 0.70.
#   2. The protocol's keep rule (the rule of every lever): some headline gain (`auto` AP,
#      `amcsd` AP, text->structure recall@10) excludes zero above and none lies wholly below
#      zero. If 2 holds, the candidate is trained on the seed-42 split and compared with the
#      shipped model on the seed-42 test split; it replaces the shipped model only if no
#      headline interval lies wholly below zero there. Issue 14 is resolved only if 1 holds too.
#   Reported, not deciding: the same comparison with both sides queried through the
#   ZeroShotClassifier templates; templates on the recipe alone (the query-side lever); the
#   candidate against its composition-only members.
source benchmarks/default_model/protocol/lib.sh
mkdir -p $R/eval_test
for draw in "" _r2 _r3; do
  merge comp_ksamp$draw $R/comp_ksamp${draw}_s4{2,3}_stage2/best
done
candidate="recipe_ksamp recipe_ksamp_r2 recipe_ksamp_r3"
recipe="default_recipe recipe_r2 recipe_r3"
comp="comp_ksamp comp_ksamp_r2 comp_ksamp_r3"
evaluate_test recipe_ksamp  # builds the test graphs into the cache once
evaluate_test comp_ksamp  # and those of the composition-only members
for name in $candidate $recipe; do
  evaluate_test $name &
  evaluate_test $name templates
  wait
done
evaluate_test comp_ksamp_r2 & evaluate_test comp_ksamp_r3 & wait
with_templates() { for n in $1; do printf '%s_templates ' $n; done; }
compare_test final_vs_recipe "$candidate" "$recipe"
compare_test final_vs_comp "$candidate" "$comp"
compare_test final_templates_vs_recipe_templates "$(with_templates "$candidate")" \
    "$(with_templates "$recipe")"
compare_test recipe_templates_vs_recipe "$(with_templates "$recipe")" "$recipe"
compare_test final_templates_vs_recipe "$(with_templates "$candidate")" "$recipe"
E=$R/eval_test
python $P/collect.py --out benchmarks/default_model/results/protocol_test.json \
    --eval $(for n in $candidate $recipe; do echo "$n=$E/$n $n"_templates=$E/$n"_templates"; done) \
    $(for n in $comp; do echo "$n=$E/$n"; done) \
    --compare $(for c in final_vs_recipe final_vs_comp final_templates_vs_recipe_templates \
                         recipe_templates_vs_recipe final_templates_vs_recipe; do
                  echo "$c=$E/compare_$c"; done)
