"""The offline trainer: learning from a trajectory dataset (BC / SFT now; offline RL methods
share the data path). `train_sft` reads like CleanRL: load -> build -> train -> save."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from archer.algorithms import sft
from archer.buffer.dataset import DatasetError, read_trajectories
from archer.config import Config
from archer.models.policy import Policy
from archer.models.tiny import build_tiny_policy, train_tokenizer
from archer.rollout.envs import env_info
from archer.types import Trajectory

Example = tuple[list[int], list[int]]  # (prompt ids, utterance ids incl. eos)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def tokenizer_corpus(trajectories: list[Trajectory]) -> list[str]:
    """Text to train a tokenizer on: the episodes, plus whatever the env says it can produce."""
    texts = [t.final_observation or (t.turns[-1].observation if t.turns else "") for t in trajectories]
    texts += [turn.action for t in trajectories for turn in t.turns]
    return texts + _env_strings(trajectories, "corpus")


def tokenizer_atomic_terms(trajectories: list[Trajectory]) -> list[str]:
    """Strings the envs of `trajectories` want kept whole by a tokenizer (`atomic_terms()`)."""
    return _env_strings(trajectories, "atomic_terms")


def _env_strings(trajectories: list[Trajectory], method: str) -> list[str]:
    """The strings `env.unwrapped.<method>()` lists, over the envs of `trajectories`."""
    out: list[str] = []
    for env_id in sorted({t.env_id for t in trajectories}):
        out += getattr(env_info(env_id), method)
    return out


def build_policy(cfg: Config, trajectories: list[Trajectory]) -> Policy:
    """Load `cfg.model.path`, or build a tiny GPT-2 and a tokenizer trained on the data."""
    if cfg.model.path is not None:
        return Policy.from_pretrained(cfg.model.path, cfg.device, cfg.model.max_context_tokens)
    tokenizer = train_tokenizer(tokenizer_corpus(trajectories), cfg.model.vocab_size,
                                tokenizer_atomic_terms(trajectories))
    model = build_tiny_policy(tokenizer, cfg.model.size, cfg.model.max_context_tokens, cfg.seed)
    return Policy(model, tokenizer, cfg.device, cfg.model.max_context_tokens)


def build_examples(policy: Policy, trajectories: list[Trajectory]) -> list[Example]:
    """One (prompt, utterance) example per agent turn; empty utterances are skipped."""
    examples = []
    for traj in trajectories:
        for turn in traj.turns:
            if not turn.action.strip():
                continue
            action = policy.encode_action(turn.action)[: policy.max_context_tokens - 1]
            prompt = policy.prompt_ids(turn.observation, len(action))
            examples.append((prompt, action))
    return examples


def collate(examples: list[Example], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, action_mask (all [B, T])."""
    width = max(len(p) + len(a) for p, a in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attention = torch.zeros_like(ids)
    action = torch.zeros_like(ids)
    for row, (p, a) in enumerate(examples):
        n = len(p) + len(a)
        ids[row, :n] = torch.tensor(p + a)
        attention[row, :n] = 1
        action[row, len(p) : n] = 1
    return {"input_ids": ids.to(device), "attention_mask": attention.to(device),
            "action_mask": action.to(device)}


def train_sft(cfg: Config, data_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
              progress: bool = True) -> dict[str, float]:
    """Behaviour cloning on a dataset's agent turns; saves an HF checkpoint to `out_dir`."""
    seed_everything(cfg.seed)
    # ---- load
    trajectories = read_trajectories(data_path)
    if cfg.sft.min_return is not None:
        trajectories = [t for t in trajectories if t.episode_return >= cfg.sft.min_return]
        if not trajectories:
            raise DatasetError(f"no episode of {data_path} has return >= sft.min_return={cfg.sft.min_return}")
    # ---- build
    policy = build_policy(cfg, trajectories)
    examples = build_examples(policy, trajectories)
    if not examples:
        raise DatasetError(f"{data_path} has no non-empty agent utterance to learn from")
    steps_per_epoch = math.ceil(len(examples) / cfg.sft.batch_size)
    total_steps = steps_per_epoch * cfg.sft.epochs
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=cfg.sft.lr,
                                  weight_decay=cfg.sft.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: _warmup_cosine(s, cfg.sft.warmup_steps, total_steps)
    )
    # ---- train
    rng = random.Random(cfg.seed)
    history: list[dict[str, float]] = []
    bar = tqdm(total=total_steps, desc="sft", disable=not progress, unit="step")
    for epoch in range(cfg.sft.epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for start in range(0, len(order), cfg.sft.batch_size):
            batch = collate([examples[i] for i in order[start : start + cfg.sft.batch_size]],
                            policy.tokenizer.pad_token_id, cfg.device)
            metrics = sft.update(policy.model, optimizer, batch, cfg.sft.grad_clip, scheduler)
            history.append({**metrics, "epoch": epoch})
            bar.update(1)
            bar.set_postfix(nll=f"{metrics['sft/nll']:.3f}")
    bar.close()
    # ---- save (to a temp dir, then rename: a crash never leaves half a checkpoint)
    summary = {
        "examples": len(examples),
        "episodes": len(trajectories),
        "steps": len(history),
        "final_nll": float(np.mean([h["sft/nll"] for h in history[-steps_per_epoch:]])),
        "skipped_steps": int(sum(h["sft/skipped"] for h in history)),
        "parameters": sum(p.numel() for p in policy.model.parameters()),
    }
    out = Path(out_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    (tmp / "archer_sft.json").write_text(json.dumps(
        {"data": str(data_path), "config": asdict(cfg), "summary": summary}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return summary


def _warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warm_start(cfg: Config, progress: bool = True, log=print) -> Path:
    """The SFT starting policy of an online run: collect `cfg.collect` episodes with the
    scripted agent, then BC (`cfg.sft`). Both are cached under `output_dir` by a digest of the
    settings that produced them, so a second run (or a resume) reuses them."""
    from archer.evaluation import collect

    out = Path(cfg.output_dir)
    tag = _digest(cfg.env, cfg.collect, cfg.seed)
    data = out / "data" / f"{cfg.collect.agent}-{tag}.jsonl"
    if data.exists():
        log(f"scripted data: {data} (cached)")
    else:
        summary = collect(cfg, data, progress=progress)
        log(f"scripted data: {cfg.collect.episodes} episodes of {cfg.collect.agent!r} (noise "
            f"{cfg.collect.noise}), return {summary['return_mean']:.2f} -> {data}")
    ckpt = out / "sft"
    key = _digest(str(data), cfg.model, cfg.sft, cfg.seed)
    marker = ckpt / "archer_cache_key"
    if marker.is_file() and (ckpt / "config.json").is_file() and marker.read_text() == key:
        log(f"SFT warm start: {ckpt} (cached)")
    else:
        summary = train_sft(cfg, data, ckpt, progress=progress)
        marker.write_text(key)
        log(f"SFT warm start: {summary['parameters']:,} parameters, {summary['steps']} steps, "
            f"final token NLL {summary['final_nll']:.3f} -> {ckpt}")
    return ckpt


def _digest(*parts: object) -> str:
    import hashlib

    blob = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
