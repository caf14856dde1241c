"""Time of an ArCHer critic phase's two parts on CPU: sampling the fresh utterances of the V
target, and the critic steps; each with and without grouping rows of similar length.

A buffer's states run from a few tokens to hundreds (Twenty Questions histories grow every
turn). A chunk of rows is padded to its longest, so random chunks mostly compute padding.
`Policy.generate` sorts its prompts by length before chunking, and the critic encodes its texts
in length-sorted groups of `ENCODE_GROUP`; this script times both against random chunks.
It also times the tiny GPT-2's GELU as Python ops (`gelu_new`) against the fused kernel.

    python benchmarks/critic_phase.py            # 1,280 states, 10 critic steps of 64
    python benchmarks/critic_phase.py --quick    # 64 states, 2 steps (the test suite)

Prints one markdown table: what, seconds.
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from archer.algorithms.archer import critic_loss
from archer.algorithms.updates import critic_step
from archer.config import CriticConfig
from archer.models import critic as critic_module
from archer.models.critic import build_critic, make_target
from archer.models.policy import Policy, Sampling
from archer.models.tiny import PRESETS, train_tokenizer

QUESTIONS = ["Is it an animal?", "Is it bigger than a car?", "Can you eat it?",
             "Is it made of metal?", "Is it found indoors?", "Does it have legs?",
             "Is it a tool?", "Is it alive?"]


def states(n: int, seed: int = 0) -> list[str]:
    """Histories of 0 to 19 answered questions, as a replay buffer holds them."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines = [f"{rng.choice(QUESTIONS)} {rng.choice(['Yes', 'No'])}."
                 for _ in range(rng.randrange(20))]
        out.append("Questions so far:\n" + "".join(line + "\n" for line in lines))
    return out


def tiny_policy(tokenizer, activation: str) -> Policy:
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=512,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id, activation_function=activation,
                        **PRESETS["tiny"])
    torch.manual_seed(0)
    return Policy(GPT2LMHeadModel(config), tokenizer, "cpu", 512, reserve=32)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n, steps, chunk = (64, 2, 32) if args.quick else (1280, 10, 64)
    texts = states(n)
    corpus = texts[:200] + QUESTIONS
    tokenizer = train_tokenizer(corpus, 1024)
    sampling = Sampling(max_new_tokens=32)
    seeds = list(range(n))
    rows = []
    for activation in ("gelu_new", "gelu_pytorch_tanh"):
        policy = tiny_policy(tokenizer, activation)
        policy.generate(texts[:chunk], sampling, seeds=seeds[:chunk], chunk_size=chunk)  # warm-up

        def random_chunks(policy=policy):
            for start in range(0, n, chunk):  # each call is one chunk: no sorting across them
                policy.generate(texts[start : start + chunk], sampling,
                                seeds=seeds[start : start + chunk], chunk_size=chunk)

        rows.append((f"generate {n} utterances, random chunks of {chunk}, {activation}",
                     timed(random_chunks)))
        rows.append((f"generate {n} utterances, length-sorted chunks of {chunk}, {activation}",
                     timed(lambda policy=policy: policy.generate(texts, sampling, seeds=seeds,
                                                                 chunk_size=chunk))))
    fresh = [random.Random(i).choice(QUESTIONS) for i in range(n)]
    critic = build_critic(CriticConfig(encoder="tiny", hidden_dim=256), corpus, "cpu", 0)
    target = make_target(critic)
    optimizer = torch.optim.AdamW(critic.parameters(), lr=1e-3, weight_decay=0.0)
    batch = 64 if not args.quick else 16

    def critic_steps():
        for k in range(steps):
            idx = [(k * batch + i) % (n - 1) for i in range(batch)]
            critic_step(critic, target, optimizer, [texts[i] for i in idx],
                        [fresh[i] for i in idx], [-1.0] * batch, [texts[i + 1] for i in idx],
                        [False] * batch, [fresh[i + 1] for i in idx], gamma=0.95,
                        grad_clip=1.0, min_q_for_v=False, micro_batch_size=batch,
                        loss_fn=critic_loss)

    for group, label in ((batch, "one padded batch"),
                         (critic_module.ENCODE_GROUP, "length-sorted groups of "
                          f"{critic_module.ENCODE_GROUP}")):
        critic.encode_group = target.encode_group = group
        critic_steps()  # warm-up
        rows.append((f"{steps} critic steps of {batch}, {label}", timed(critic_steps)))
    print(f"torch threads: {torch.get_num_threads()}\n")
    print("| what | seconds |")
    print("|---|---|")
    for what, seconds in rows:
        print(f"| {what} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
