#!/usr/bin/env bash
# The logged datasets of the offline tables (docs/algorithms.md), into runs/offline/data:
#   20q_mixed.jsonl  Twenty Questions (subset): 200 info_gain episodes at noise 0.3 (seed 0)
#                    + 100 at noise 0.9 (seed 1): every one of the first a success, about half
#                    of the noisy ones; returns -20 to -1
#   cqs_mixed.jsonl  ClarifyQA (subset: cooking and sports, 58 requests): 200 episodes each of
#                    always_answer, always_ask and ask_when_ambiguous at noise 0.2, the same
#                    seed, so every request drawn is logged by all three (Swift's groups)
#   cq_mixed.jsonl   ClarifyQA (all 587 requests, 20% held out): the same three agents, 500
#                    episodes each, on the training requests
set -euo pipefail
cd "$(dirname "$0")/.."
A="${ARCHER:-.venv/bin/archer}"
D=runs/offline/data
mkdir -p $D
[ -f $D/20q_mixed.jsonl ] || {
  $A collect --env archer/TwentyQuestionsSubset-v0 --agent info_gain --noise 0.3 --seed 0 \
      --episodes 200 --out $D/20q_good.jsonl --quiet
  $A collect --env archer/TwentyQuestionsSubset-v0 --agent info_gain --noise 0.9 --seed 1 \
      --episodes 100 --out $D/20q_noisy.jsonl --quiet
  cat $D/20q_good.jsonl $D/20q_noisy.jsonl > $D/20q_mixed.jsonl
}
[ -f $D/cqs_mixed.jsonl ] || {
  for agent in always_answer always_ask ask_when_ambiguous; do
    $A collect --env archer/ClarifyQASubset-v0 --agent $agent --noise 0.2 --seed 0 \
        --episodes 200 --out $D/cqs_$agent.jsonl --quiet
  done
  cat $D/cqs_always_answer.jsonl $D/cqs_always_ask.jsonl $D/cqs_ask_when_ambiguous.jsonl \
      > $D/cqs_mixed.jsonl
}
[ -f $D/cq_mixed.jsonl ] || {
  for agent in always_answer always_ask ask_when_ambiguous; do
    $A collect --env archer/ClarifyQA-v0 --agent $agent --noise 0.2 --seed 0 \
        --episodes 500 --out $D/cq_$agent.jsonl --quiet
  done
  cat $D/cq_always_answer.jsonl $D/cq_always_ask.jsonl $D/cq_ask_when_ambiguous.jsonl \
      > $D/cq_mixed.jsonl
}
