#!/usr/bin/env bash
# usage: scripts/offline_table.sh 20q|cqs|cq SEED     (cq: the full ClarifyQA, held-out requests)
# Every offline method of docs/algorithms.md's offline tables on one env and seed, from the
# data of scripts/offline_data.sh, into runs/offline/ENV-sSEED/METHOD (a method whose folder
# exists is skipped: run seeds side by side, or re-run to finish). Then
# `python scripts/offline_summary.py runs/offline` prints the tables.
set -uo pipefail
cd "$(dirname "$0")/.."
A="${ARCHER:-.venv/bin/archer}"
E=$1; s=$2
R=runs/offline/$E-s$s; D=runs/offline/data
mkdir -p $R
if [ "$E" = cqs ]; then
  COMMON="env.id=archer/ClarifyQASubset-v0 data.path=$D/cqs_mixed.jsonl generation.max_new_tokens=48"
  IT=10; MINR=1.0; REFIT="refit.reward_shift=0 refit.reward_scale=1"; EP=100
elif [ "$E" = cq ]; then  # evaluated on the held-out requests (eval.split=eval, the default)
  COMMON="env.id=archer/ClarifyQA-v0 data.path=$D/cq_mixed.jsonl generation.max_new_tokens=48"
  IT=6; MINR=1.0; REFIT="refit.reward_shift=0 refit.reward_scale=1"; EP=100
else
  COMMON="env.id=archer/TwentyQuestionsSubset-v0 data.path=$D/20q_mixed.jsonl"
  IT=2; MINR=-6; REFIT="refit.reward_shift=20 refit.reward_scale=0.05"; EP=50
fi
# the start of a method trained from scratch is an untrained tiny model: not evaluated
COMMON="$COMMON eval.episodes=$EP train.eval_every=0 train.eval_start=false train.tensorboard=false seed=$s"
evaluate() {  # name, policy dir: its greedy and sampled return, as the runs evaluate
  [ -f $R/$1.json ] && return 0
  for d in greedy sample; do
    OMP_NUM_THREADS=1 $A eval --policy $2 --decoding $d --json $COMMON 2>/dev/null | tail -1
  done > $R/$1.tmp && mv $R/$1.tmp $R/$1.json
}
run() {  # name, then train overrides
  local name=$1; shift
  [ -e $R/$name ] && return 0
  mkdir -p $R/$name
  OMP_NUM_THREADS=1 $A train --quiet $COMMON output_dir=$R/$name "$@" > $R/$name.log 2>&1 \
    && touch $R/$name.done && echo "$E s$s $name done $(date +%T)"
}
if [ "$E" != 20q ]; then  # every method from a tiny model built on the data (BC's start)
  run bc algo=bc train.iterations=$IT
  run bc_success algo=bc train.iterations=$IT bc.min_return=$MINR
  run refit algo=refit train.iterations=$IT $REFIT
  run swift algo=swift train.iterations=$IT
  run ilql algo=ilql train.iterations=$IT ilql.polyak=0.05 ilql.beta=16
  run offline_archer algo=offline_archer train.iterations=$IT offline_archer.actor.beta=10
  SFT=$R/bc/checkpoint/policy
  while [ ! -f $R/bc.done ]; do sleep 20; done  # the SFT start of the ones below
else  # every method fine-tunes the main job's warm start of this seed on the logged data
  if [ ! -f $R/sft/checkpoint/policy/config.json ]; then
    $A collect --env archer/TwentyQuestionsSubset-v0 --agent info_gain --noise 0.3 --seed $s \
        --episodes 500 --out $R/sft_data.jsonl --quiet
    $A sft --data $R/sft_data.jsonl --out $R/sft --quiet env.id=archer/TwentyQuestionsSubset-v0 seed=$s
  fi
  SFT=$R/sft/checkpoint/policy
  START="train.init_policy=$SFT"
  evaluate start $SFT  # the start itself
  run bc algo=bc train.iterations=$IT $START bc.lr=5e-4
  run bc_success algo=bc train.iterations=$IT bc.min_return=$MINR $START bc.lr=5e-4
  run refit algo=refit train.iterations=$IT $REFIT $START refit.lr=5e-4
  run swift algo=swift train.iterations=$IT $START swift.lr=5e-4
  run ilql algo=ilql train.iterations=$IT ilql.polyak=0.05 ilql.beta=16 ilql.batch_size=4 $START ilql.lr=5e-4
  run offline_archer algo=offline_archer train.iterations=$IT offline_archer.actor.beta=10 $START offline_archer.actor.lr=5e-4
fi
run dpo algo=dpo train.iterations=3 train.init_policy=$SFT
AGRO_GROUPS=$([ "$E" = 20q ] && echo 1 || echo 8)  # task ids per AGRO step (20q: 10 in all)
run agro algo=agro agro.offline=true train.iterations=3 train.init_policy=$SFT agro.groups_per_step=$AGRO_GROUPS
[ "$E" != 20q ] && run swift_sft algo=swift train.iterations=3 train.init_policy=$SFT swift.lr=1e-4
# ILQL without value-guided decoding: its LM head alone, same evaluation as the runs'
[ -f $R/ilql.done ] && evaluate ilql_lm_head $R/ilql/checkpoint/policy
# ... and value-guided at a smaller beta (sampled; the run's own evaluation used beta 16)
if [ -f $R/ilql.done ] && [ ! -f $R/ilql_beta4.json ]; then
  OMP_NUM_THREADS=1 $A eval --policy $R/ilql/checkpoint/policy --decoding ilql --beta 4 --json \
    $COMMON 2>/dev/null | tail -1 > $R/ilql_beta4.tmp && mv $R/ilql_beta4.tmp $R/ilql_beta4.json
fi
