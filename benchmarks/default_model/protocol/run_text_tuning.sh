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
comp_member_screen comp_textft text_tuning
