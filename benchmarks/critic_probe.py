"""Critic probe: how much of a policy's return can a critic explain, on episodes it never saw?

    python benchmarks/critic_probe.py --policy runs/quickstart/sft
    python benchmarks/critic_probe.py --policy runs/quickstart/sft --encoders tiny minilm --steps 600
    python benchmarks/critic_probe.py --policy runs/quickstart/sft --q-inputs concat pair
    python benchmarks/critic_probe.py --policy DIR --quick       # seconds, for the tests

Samples `--episodes` episodes from the policy (temperature 1, the train split), keeps a
held-out fifth, and fits the project's critic (`archer.models.critic`, one per `--encoders`
entry) to the discounted Monte Carlo returns of the rest: Q_i(s, a) and V_i(s) regressed on
G, `--steps` AdamW steps. On-policy, E[G | s, a] is Q^pi, so this is the best case for the
critic: no bootstrapping, no moving policy. Prints held-out explained variance (1 - Var[G -
pred] / Var[G]) next to two lookup-table baselines (mean return by turn index; by turn index
and task id, a predictor that knows the secret), and the mean advantage the critic gives to
utterances the policy already said earlier in the same episode, next to their Monte Carlo
advantage (G minus the by-turn-and-task table's prediction).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

from archer.algorithms.archer import discounted_returns, explained_variance
from archer.config import Q_INPUTS, CriticConfig, load_config
from archer.evaluation import evaluate
from archer.models.builders import tokenizer_corpus
from archer.models.critic import build_critic
from archer.models.policy import Policy


def turns_of(trajectories, gamma):
    """(state, action, G, turn index, task id, repeats an earlier utterance) per turn of the
    episodes whose return is complete (`Trajectory.return_complete`)."""
    rows = []
    for t in (t for t in trajectories if t.return_complete):
        said: set[str] = set()
        for i, (turn, g) in enumerate(zip(t.turns, discounted_returns(
                [x.reward for x in t.turns], gamma), strict=True)):
            text = turn.action.strip()
            rows.append((turn.observation, turn.action, g, i, t.task_id, text in said))
            said.add(text)
    return rows


def table_predict(train, test, key):
    """A lookup table's prediction of G for the `test` rows: mean training G per key(row)."""
    sums: dict = defaultdict(list)
    for r in train:
        sums[key(r)].append(r[2])
    overall = float(np.mean([r[2] for r in train]))
    return np.array([float(np.mean(sums[key(r)])) if key(r) in sums else overall for r in test])


def fit_critic(encoder, frozen, q_input, corpus, train, test, g, rep, steps, batch, lr, seed):
    """Fit a critic to G on `train`; on `test` (returns `g`, repeat mask `rep`), EV of min V
    and min Q, the mean advantage min Q - min V on repeated utterances, and the fit's seconds."""
    torch.manual_seed(seed)
    cfg = CriticConfig(encoder=encoder, frozen_encoder=frozen, q_input=q_input)
    critic = build_critic(cfg, corpus, seed=seed)
    opt = torch.optim.AdamW([p for p in critic.parameters() if p.requires_grad], lr=lr)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        b = [train[i] for i in rng.integers(len(train), size=batch)]
        target = torch.tensor([r[2] for r in b])
        q1, q2, v1, v2 = critic([r[0] for r in b], [r[1] for r in b])
        loss = sum(((x - target) ** 2).mean() for x in (q1, q2, v1, v2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(critic.parameters(), 1.0)
        opt.step()
    seconds = time.perf_counter() - t0
    critic.eval()
    q, v = [], []
    with torch.no_grad():
        for i in range(0, len(test), 256):
            b = test[i : i + 256]
            q1, q2, v1, v2 = critic([r[0] for r in b], [r[1] for r in b])
            q += torch.minimum(q1, q2).tolist()
            v += torch.minimum(v1, v2).tolist()
    q, v = np.array(q), np.array(v)
    adv = (q[rep] - v[rep]).mean() if rep.any() else float("nan")
    return explained_variance(v, g), explained_variance(q, g), adv, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", required=True, help="local HF causal-LM directory (e.g. an SFT start)")
    ap.add_argument("--env", default="archer/TwentyQuestionsSubset-v0")
    ap.add_argument("--episodes", type=int, default=800)
    ap.add_argument("--steps", type=int, default=600, help="critic steps per encoder")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--gamma", type=float, default=0.95)
    ap.add_argument("--encoders", nargs="+", default=["tiny"],
                    help="tiny, minilm (frozen, cached) or a local encoder directory")
    ap.add_argument("--q-inputs", nargs="+", default=[CriticConfig.q_input], choices=Q_INPUTS,
                    help="what the Q heads read (critic.q_input), each fitted per encoder")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="16 episodes of at most 4 turns, 2 steps: a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.steps, args.batch = 16, 2, 8

    quick = ["env.kwargs.max_turns=4", "generation.max_new_tokens=8"] if args.quick else []
    cfg = load_config(overrides=[f"env.id={args.env}", "eval.decoding=sample", "eval.split=train",
                                 f"eval.episodes={args.episodes}", f"seed={args.seed}", *quick])
    policy = Policy.from_pretrained(args.policy, "cpu", cfg.model.max_context_tokens,
                                    reserve=cfg.generation.max_new_tokens)
    summary, trajectories = evaluate(cfg, policy=policy, progress=False)
    order = np.random.default_rng(args.seed).permutation(len(trajectories))
    cut = int(0.8 * len(trajectories))
    train = turns_of([trajectories[i] for i in order[:cut]], args.gamma)
    test = turns_of([trajectories[i] for i in order[cut:]], args.gamma)
    g = np.array([r[2] for r in test])
    rep = np.array([r[5] for r in test])
    print(f"{args.env}: {len(trajectories)} sampled episodes (return {summary['return_mean']:.2f}); "
          f"{len(train)} training turns, {len(test)} held-out turns, held-out G std {g.std():.2f}, "
          f"{rep.mean():.0%} of held-out turns repeat an earlier utterance")
    print()
    print("| predictor of G | EV of V(s) | EV of Q(s, a) | mean advantage of repeats | fit (s) |")
    print("|---|---|---|---|---|")

    def fmt(x):
        return "-" if x is None or not np.isfinite(x) else f"{x:.3f}"

    by_turn = table_predict(train, test, lambda r: r[3])
    by_task = table_predict(train, test, lambda r: (r[3], r[4]))
    # Monte Carlo advantage of a repeat: its G against the mean G at the same turn and secret.
    mc = (g[rep] - by_task[rep]).mean() if rep.any() else float("nan")
    print(f"| table: mean G by turn index | {fmt(explained_variance(by_turn, g))} | | | |")
    print(f"| table: mean G by turn index and task id | {fmt(explained_variance(by_task, g))} | "
          f"| {fmt(mc)} (Monte Carlo: G - table) | |")
    corpus = tokenizer_corpus(trajectories)
    for enc, q_input in ((e, q) for e in args.encoders for q in args.q_inputs):
        frozen = enc != "tiny"
        ev_v, ev_q, adv, seconds = fit_critic(enc, frozen, q_input, corpus, train, test, g, rep,
                                              args.steps, args.batch, args.lr, args.seed)
        name = f"critic {enc}{' (frozen)' if frozen else ''}, q_input {q_input}, {args.steps} steps"
        print(f"| {name} | {fmt(ev_v)} | {fmt(ev_q)} | {fmt(adv)} (critic: min Q - min V) "
              f"| {seconds:.0f} |")


if __name__ == "__main__":
    main()
