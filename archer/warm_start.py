"""The SFT starting policy of an online run: scripted episodes, then BC through the loop.

Both steps are cached under `output_dir` by a digest of the settings that produced them, so a
second run (or a resume) reuses them: `data/<agent>-<digest>.jsonl` (written as
`archer collect` writes it) and `sft/`, a BC run
(`algo=bc`, `bc.epochs` loop iterations) whose policy is `sft/checkpoint/policy`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from archer.config import Config, TrainConfig

CACHE_KEY = "archer_cache_key"


def digest(*parts: object) -> str:
    blob = json.dumps([dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p  # type: ignore[arg-type]
                       for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def bc_config(cfg: Config, data: str | Path, out: str | Path) -> Config:
    """`cfg` turned into the BC run of a dataset: algo=bc, `bc.epochs` iterations, no
    periodic evaluation, one checkpoint at the end, in `out`, learning in this process (a
    learner group is for the run that follows)."""
    train = TrainConfig(iterations=cfg.bc.epochs, eval_every=0, save_every=0,
                        tensorboard=False, max_nonfinite=cfg.train.max_nonfinite)
    return dataclasses.replace(cfg, algo="bc", output_dir=str(out), train=train,
                               data=dataclasses.replace(cfg.data, path=str(data)),
                               cluster=dataclasses.replace(cfg.cluster, learner_ranks=0))


def train_bc(cfg: Config, data: str | Path, out: str | Path, progress: bool = True,
             log=print) -> dict[str, Any]:
    """BC on the episodes of `data` into `out` (policy: `out/checkpoint/policy`)."""
    from archer import loop

    result = loop.run(bc_config(cfg, data, out), progress=progress, log=log, final_eval=False)
    last = result["history"][-1]
    policy_dir = Path(result["checkpoint"]) / "policy"
    return {"policy": str(policy_dir), "examples": int(last["bc/examples"]),
            "episodes": int(last["progress/dataset_episodes"]),
            "steps": int(sum(h["bc/steps"] for h in result["history"])),
            "final_nll": float(last["bc/nll"]),
            "skipped_steps": int(sum(h.get("bc/skipped", 0.0) for h in result["history"]))}


def data_path(cfg: Config) -> Path:
    """The warm start's scripted episodes: `output_dir/data/<agent>-<digest>.jsonl`."""
    tag = digest(cfg.env, cfg.collect, cfg.seed)
    return Path(cfg.output_dir) / "data" / f"{cfg.collect.agent}-{tag}.jsonl"


def warm_start(cfg: Config, progress: bool = True, log=print) -> Path:
    """Collect `cfg.collect` episodes with the scripted agent, then BC (`cfg.bc`), both cached
    by digest; returns the policy directory."""
    from archer.evaluation import collect

    out = Path(cfg.output_dir)
    data = data_path(cfg)
    if data.exists():
        log(f"scripted data: {data} (cached)")
    else:
        summary = collect(cfg, data, progress=progress)
        log(f"scripted data: {cfg.collect.episodes} episodes of {cfg.collect.agent!r} (noise "
            f"{cfg.collect.noise}), return {summary['return_mean']:.2f} -> {data}")
    sft = out / "sft"
    policy = sft / "checkpoint" / "policy"
    key = digest(str(data), cfg.model, cfg.generation.max_new_tokens, cfg.bc, cfg.seed)
    marker = sft / CACHE_KEY
    if marker.is_file() and (policy / "config.json").is_file() and marker.read_text() == key:
        log(f"SFT warm start: {policy} (cached)")
        return policy
    summary = train_bc(cfg, data, sft, progress=progress, log=log)
    marker.write_text(key)
    log(f"SFT warm start: {summary['steps']} steps, final token NLL {summary['final_nll']:.3f} "
        f"-> {policy}")
    return policy
