#!/usr/bin/env bash
# Protocol (issue 14), sixth session: tune the text encoder in stage 2 (TrainConfig.text_lr).
# Every earlier lever kept the MiniLM encoder frozen, as the official run did. Here its top two
# layers (of six) train at 2e-5 while the heads keep 2e-4 (comp_textft_s4{2,3}_stage2.yaml).
# A screen on the two composition members (cheap crystal side, the same stage-1 runs as the
# recipe), each against its own plain stage 2. The arbiter, fixed before this run: the decision
# rule on the mean of both seeds on each side; only if it passes do graph members follow.
# Validation split of seed 2026 only.
source benchmarks/default_model/protocol/lib.sh
stage2_pair comp_textft_s42 comp_textft_s43
for name in comp_member_s42 comp_member_s43 comp_textft_s42 comp_textft_s43; do
  evaluate_val ${name}_stage2/best &
done
wait
E=$R/eval
for keywords in amcsd auto; do  # each side averaged over its two seeds
  matminer-clasp compare \
      $E/comp_textft_s42_stage2/best/$keywords,$E/comp_textft_s43_stage2/best/$keywords \
      $E/comp_member_s42_stage2/best/$keywords,$E/comp_member_s43_stage2/best/$keywords \
      --bootstrap 1000 --out $E/compare_comp_textft_both_vs_comp_member_both_$keywords.json
done
python $P/collect.py --out benchmarks/default_model/results/protocol_val_text_tuning.json \
    --eval comp_member_s42=$E/comp_member_s42_stage2/best comp_member_s43=$E/comp_member_s43_stage2/best \
    comp_textft_s42=$E/comp_textft_s42_stage2/best comp_textft_s43=$E/comp_textft_s43_stage2/best \
    --compare comp_textft_both_vs_comp_member_both=$E/compare_comp_textft_both_vs_comp_member_both
