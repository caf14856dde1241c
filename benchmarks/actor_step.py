"""Actor-step benchmark: one ArCHer actor optimizer step (forward + backward over the micro-
batches, averaged, then AdamW) inside the DeepSpeed engine, per ZeRO stage and precision.

    python benchmarks/actor_step.py --device cuda --model gpt2-124m --stages 0 2 3 --precisions fp32 bf16
    python benchmarks/actor_step.py --quick            # tiny model on CPU, seconds

Models are built from a config (no download): `tiny` (the tiny preset) or `gpt2-124m` (GPT-2
small's shape). Prints one table row per setting: ms per step, tokens/s, peak GPU memory.
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from archer.config import DeepSpeedConfig
from archer.distributed import build_actor_engine

SHAPES = {
    "tiny": dict(vocab_size=1024, n_embd=128, n_layer=2, n_head=4),
    "gpt2-124m": dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12),
}


def measure(model_name: str, device: str, stage: int, precision: str, batch: int, micro: int,
            seq: int, steps: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(**SHAPES[model_name], n_positions=max(seq, 64),
                                       bos_token_id=0, eos_token_id=0))
    ds = DeepSpeedConfig(zero_stage=stage, precision=precision, micro_batch_size=micro)
    engine = build_actor_engine(model, ds, lr=1e-5, batch_size=batch, grad_clip=1.0, device=device)
    dev = next(engine.module.parameters()).device
    ids = torch.randint(0, SHAPES[model_name]["vocab_size"], (batch, seq), device=dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for chunk in ids.split(micro):
            engine.backward(engine(input_ids=chunk, labels=chunk).loss)
            engine.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    step_s = sorted(times[1:])[len(times[1:]) // 2]  # median, first step (warm-up) dropped
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    return {"ms_per_step": 1000 * step_s, "tokens_per_s": batch * seq / step_s, "peak_gib": peak}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="tiny", choices=sorted(SHAPES))
    p.add_argument("--stages", type=int, nargs="+", default=[0])
    p.add_argument("--precisions", nargs="+", default=["fp32"])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--micro", type=int, default=8)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny model, 2 steps, CPU")
    a = p.parse_args()
    if a.quick:
        a.model, a.steps, a.seq, a.batch, a.micro = "tiny", 2, 32, 8, 4
    print(f"actor step: {a.model}, batch {a.batch} x {a.seq} tokens, micro-batch {a.micro}, "
          f"device {a.device}")
    print(f"{'ZeRO':>4s} {'precision':>9s} {'ms/step':>9s} {'tokens/s':>10s} {'peak GiB':>9s}")
    for stage in a.stages:
        for precision in a.precisions:
            r = measure(a.model, a.device, stage, precision, a.batch, a.micro, a.seq, a.steps)
            print(f"{stage:>4d} {precision:>9s} {r['ms_per_step']:9.1f} {r['tokens_per_s']:10.0f} "
                  f"{r['peak_gib']:9.2f}")


if __name__ == "__main__":
    main()
