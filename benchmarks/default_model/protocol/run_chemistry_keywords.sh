#!/usr/bin/env bash
# Protocol (issue 14), fourth session, lever: the chemical class in the keyword captions (stage 2).
# Each entry's class from its formula ("silicate", "sulfide", "oxide", ...) joins its stage-2
# caption (`DataConfig.chemistry_keywords`); then both levers of this session together (mineral
# name and class: the *_minchem_* configs). Stage 1 is unchanged: the members' stage 2 starts
# from the stage-1 runs of run_comp_members.sh, and the merged recipes are compared with the
# shipped recipe retrained in the same session (default_recipe) and with the mineral-name recipe
# of run_mineral_keywords.sh. Validation split only.
source benchmarks/default_model/protocol/lib.sh
stage2_pair graph_chem_s42 graph_chem_s43
stage2_pair comp_chem_s42 comp_chem_s43
merge_recipe recipe_chem graph_chem comp_chem
evaluate_val recipe_chem
compare_val recipe_chem default_recipe
stage2_pair graph_minchem_s42 graph_minchem_s43
stage2_pair comp_minchem_s42 comp_minchem_s43
merge_recipe recipe_minchem graph_minchem comp_minchem
evaluate_val recipe_minchem
compare_val recipe_minchem default_recipe
compare_val recipe_minchem recipe_mineral
E=$R/eval
python $P/collect.py --out benchmarks/default_model/results/protocol_val_chemistry_keywords.json \
    --eval default_recipe=$E/default_recipe recipe_chem=$E/recipe_chem \
    recipe_mineral=$E/recipe_mineral recipe_minchem=$E/recipe_minchem \
    --compare recipe_chem_vs_default_recipe=$E/compare_recipe_chem_vs_default_recipe \
    recipe_minchem_vs_default_recipe=$E/compare_recipe_minchem_vs_default_recipe \
    recipe_minchem_vs_recipe_mineral=$E/compare_recipe_minchem_vs_recipe_mineral
python $P/label_noise.py $E/default_recipe/amcsd $E/recipe_chem/amcsd $E/recipe_minchem/amcsd \
    --out benchmarks/default_model/results/protocol_val_label_noise_chemistry.json
