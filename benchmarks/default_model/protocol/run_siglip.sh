#!/usr/bin/env bash
# Protocol (issue 14), sixth session: the sigmoid loss (SigLIP) instead of InfoNCE, in both
# stages. SigLIP scores every (structure, caption) pair on its own, so captions shared by many
# structures (keyword lists) are positives without a softmax over the batch. A screen on the two
# composition members (comp_siglip_s4{2,3}.yaml and their stage 2) against the recipe's own
# (comp_member_s4{2,3}). The arbiter, fixed before this run: the decision rule on the mean of both
# seeds on each side; graph members follow only if it passes. Validation split of seed 2026 only.
source benchmarks/default_model/protocol/lib.sh
for s in 42 43; do
  stage1 comp_siglip_s$s &
done
wait
stage2_pair comp_siglip_s42 comp_siglip_s43
comp_member_screen comp_siglip siglip
