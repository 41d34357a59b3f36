#!/bin/bash
# Issue 15's seed study: every learned-policy setting trained with 3 seeds to a matched number of
# updates, then reported against the heuristics on validation (the runs' own evaluations: for
# choosing) and test (the figures in docs/learned_policy.md). Each run was trained by
#
#   demask policy-train --recipe tinycode/policy_full --out runs/polw-full-a<A>[-s<S>] \
#     --set policy.max_updates=162 --set policy.max_seconds=3000 --set train.max_steps=1000 \
#     --set train.eval_every=100000 --set train.save_every=20 --set train.keep_checkpoints=2 \
#     --set policy.imitate_threshold=0.9 --set policy.imitate_steps=200 --set train.lr=1e-4 \
#     --set policy.alpha=<A> --set train.seed=<S>
#
# (expert steering: --set policy.experts=2 and max_updates=120; semi-AR: --recipe
# tinycode/policy_semi_ar, imitate_threshold=0.95, max_updates=100; a run cut short by an older
# time cap continued with --resume). Needs the heuristics' points first
# (experiments/learned_policy_frontier.py --split validation|test --mode full|semi-ar).
set -e
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
FULL=(--group "alpha 10=runs/polw-full-a10,runs/polw-full-a10-s1,runs/polw-full-a10-s2"
      --group "alpha 3=runs/polw-full-a3,runs/polw-full-a3-s1,runs/polw-full-a3-s2"
      --group "alpha 1=runs/polw-full-a1,runs/polw-full-a1-s1,runs/polw-full-a1-s2"
      --group "alpha 0.3=runs/polw-full-a03,runs/polw-full-a03-s1,runs/polw-full-a03-s2"
      --group "alpha 1 + expert steering (E = 2)=runs/polw-full-a1-e2,runs/polw-full-a1-e2-s1,runs/polw-full-a1-e2-s2")
# semi-AR alpha 10, seed 0 ran to 106 updates: runs/polw-semi-a10-u100 holds a link to its 100-update checkpoint
SEMI=(--group "alpha 10=runs/polw-semi-a10-u100,runs/polw-semi-a10-s1,runs/polw-semi-a10-s2"
      --group "alpha 1=runs/polw-semi-a1,runs/polw-semi-a1-s1,runs/polw-semi-a1-s2"
      --group "alpha 0.3=runs/polw-semi-a03,runs/polw-semi-a03-s1,runs/polw-semi-a03-s2")
$PY experiments/learned_policy_report.py --split validation --mode full --reuse-training-eval "${FULL[@]}" \
    --docs docs/learned_policy_seeds_validation
$PY experiments/learned_policy_report.py --split validation --mode semi-ar --reuse-training-eval "${SEMI[@]}" \
    --docs docs/learned_policy_semi_alpha_validation
$PY experiments/learned_policy_report.py --split test --mode full "${FULL[@]}" --docs docs/learned_policy_seeds_test
$PY experiments/learned_policy_report.py --split test --mode semi-ar "${SEMI[@]}" --docs docs/learned_policy_semi_alpha_test
