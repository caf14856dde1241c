"""BC / SFT: token NLL of the agent's utterances in a dataset; environment text is never a
target. It is also the warm start of every online run (archer/warm_start.py).

One loop iteration is one epoch over the dataset's agent turns, in shuffled batches of
`bc.batch_size` turns, each one optimizer step (linear warm-up, then cosine decay to 10% over
all the run's steps). Turns that carry the sampled ids (`Turn.action_ids`) are trained on those
ids; scripted turns are encoded once, as `encode(action) + eos`.
"""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from archer.algorithms import parallel
from archer.algorithms.api import Acting, RunContext, engine_acting, save_policy
from archer.algorithms.losses import nll_loss
from archer.algorithms.updates import policy_step
from archer.buffer.dataset import DatasetError, read_trajectories
from archer.config import BCConfig
from archer.errors import CheckpointError
from archer.metrics import mean_metrics
from archer.models.policy import Policy, TokenBatch
from archer.types import Trajectory, Turn

if TYPE_CHECKING:
    from archer.config import Config

Example = tuple[str, list[int]]
"""(observation, action ids) of one agent turn."""


def bc_loss(token_logp: torch.Tensor, mask: torch.Tensor, n_tokens: float,
            ) -> tuple[torch.Tensor, dict[str, float]]:
    """Token-mean NLL over the step's action tokens (`nll_loss` under the bc/ prefix)."""
    return nll_loss(token_logp, mask, n_tokens, prefix="bc")


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    """Learning-rate factor: linear warm-up over `warmup` steps, then cosine from 1 to 0.1."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int,
             ) -> torch.optim.lr_scheduler.LambdaLR:
    """`warmup_cosine` over `total` optimizer steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: warmup_cosine(k, warmup, total))


def offline_engine(cfg: Config, policy: Policy, *, lr: float, batch_size: int,
                   grad_clip: float, weight_decay: float = 0.0) -> Any:
    """The engine of an offline method, around `policy.model` (which becomes the engine's
    module). In the driver: the single-process torch engine, one micro-batch per step of
    `batch_size`. In a learner group: a DeepSpeed engine (`cfg.deepspeed`: its ZeRO stage,
    precision and micro-batch size), so a step is `batch_size / deepspeed.micro_batch_size`
    micro-batches whatever the number of ranks, each rank running its share of them (BC,
    Refit and Swift run in a learner group). They step with
    `policy_step(micro_batch_size=None)`, which cuts a step's rows into that many near-even
    parts (BC's last step of an epoch is shorter; Refit's rows are the turns of its episodes);
    the parts, and so the dropout streams of each, do not depend on the number of ranks."""
    from archer.config import DeepSpeedConfig
    from archer.distributed.engine import build_actor_engine

    ds = (cfg.deepspeed if parallel.in_group()
          else DeepSpeedConfig(enabled=False, micro_batch_size=batch_size))
    engine = build_actor_engine(policy.model, ds, lr=lr, batch_size=batch_size,
                                grad_clip=grad_clip, weight_decay=weight_decay,
                                device=cfg.device)
    policy.model = engine.module
    return engine


def check_last_step(count: int, batch_size: int, engine: Any, what: str, key: str) -> None:
    """Refuse a dataset of `count` items (`what`) whose last step of an epoch, `count %
    batch_size` of them, has fewer than the micro-batches a step is cut into (the engine's, over
    every learner rank): `policy_step(micro_batch_size=None)` gives each part a row at least."""
    parts = int(engine.gradient_accumulation_steps) * parallel.world()[1]
    last = count % batch_size
    if 0 < last < parts:
        raise DatasetError(f"the dataset's {count} {what} leave a last step of {last} per "
                           f"epoch, fewer than the {parts} micro-batches a step is cut into: "
                           f"change {key}.batch_size or deepspeed.micro_batch_size")


def save_scheduled(directory: Path, name: str, policy: Policy, engine: Any,
                   scheduler: Any, rng: random.Random, version: int) -> None:
    """An offline method's checkpoint: the policy and engine, then its scheduler, RNG and
    version in `<name>_state.pt`."""
    save_policy(policy, engine, directory)
    if parallel.is_writer():  # learner ranks hold the same scheduler, RNG and version
        torch.save({"scheduler": scheduler.state_dict(), "rng": rng.getstate(),
                    "version": version}, directory / f"{name}_state.pt")


def load_scheduled(directory: Path, name: str, what: str, policy: Policy, engine: Any,
                   scheduler: Any, rng: random.Random) -> int:
    """Restore what `save_scheduled` wrote (the policy model becomes the engine's module);
    returns the version. A missing or broken part is a CheckpointError naming `what`."""
    try:
        engine.load_checkpoint(directory / "engine")
        state = torch.load(directory / f"{name}_state.pt", weights_only=False)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise CheckpointError(f"cannot resume {what} from {directory}: {err}") from None
    scheduler.load_state_dict(state["scheduler"])
    rng.setstate(state["rng"])
    policy.model = engine.module
    return int(state["version"])


def check_tokenizer(policy: Policy, traj: Trajectory, where: str | None = None) -> None:
    """Sampled ids from another tokenizer are a DatasetError naming the episode (and `where`,
    its file and line): they would be trained as other tokens."""
    if traj.tokenizer not in (None, policy.fingerprint) and any(t.action_ids for t in traj.turns):
        raise DatasetError(
            f"{where + ': ' if where else ''}episode {traj.task_id!r} ({traj.agent}) holds token "
            f"ids of tokenizer {traj.tokenizer}, but the policy's is {policy.fingerprint}: train "
            "with the policy that sampled it, or drop its action_ids to re-encode the text")


def turn_ids(policy: Policy, turn: Turn) -> list[int]:
    """A turn's action ids: the sampled ones when it has them, else `encode(action) + eos`."""
    return list(turn.action_ids) if turn.action_ids else policy.action_ids_for(turn.action)


def turn_examples(policy: Policy, trajectories: list[Trajectory]) -> list[Example]:
    """One example per agent turn with a non-empty utterance (`turn_ids`); sampled ids of
    another tokenizer are a DatasetError (`check_tokenizer`)."""
    examples = []
    for traj in trajectories:
        check_tokenizer(policy, traj)
        examples += [(turn.observation, turn_ids(policy, turn)) for turn in traj.turns
                     if turn.action_ids or turn.action.strip()]
    return examples


class BC:
    data = "offline"

    def __init__(self, s: BCConfig, policy: Policy, engine: Any, examples: list[Example],
                 epochs: int, seed: int, episodes: int = 0):
        if not examples:
            raise DatasetError("the dataset has no non-empty agent utterance to learn from")
        check_last_step(len(examples), s.batch_size, engine, "agent turns", "bc")
        self.s, self.policy, self.engine, self.examples = s, policy, engine, examples
        self.steps_per_epoch = math.ceil(len(examples) / s.batch_size)
        total = self.steps_per_epoch * epochs
        self.scheduler = schedule(engine.base_optimizer, s.warmup_steps, total)
        self.rng = random.Random(seed)
        self.episodes = episodes
        self.version = 0

    def learn(self, new: list[Trajectory], iteration: int) -> dict[str, float]:
        order = list(range(len(self.examples)))
        self.rng.shuffle(order)
        history = []
        for start in range(0, len(order), self.s.batch_size):
            batch = [self.examples[i] for i in order[start : start + self.s.batch_size]]
            rows = self.policy.batch([o for o, _ in batch], [a for _, a in batch])
            n_tokens = float(max(rows.action_tokens, 1))

            def loss(logp: torch.Tensor, sub: TokenBatch, idx: list[int], n=n_tokens):
                return bc_loss(logp, sub.action_mask.to(logp.device), n)

            m = policy_step(self.engine, self.policy, rows, loss, micro_batch_size=None,
                            prefix="bc", train_mode=True)
            self.scheduler.step()
            history.append({**m, "bc/lr": self.scheduler.get_last_lr()[0]})
        self.policy.model.eval()
        self.version += 1
        return mean_metrics(history) | {"bc/examples": float(len(self.examples)),
                                        "progress/dataset_episodes": float(self.episodes),
                                        "bc/steps": float(len(history))}

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        save_scheduled(directory, "bc", self.policy, self.engine, self.scheduler, self.rng,
                       self.version)

    def load(self, directory: Path) -> None:
        self.version = load_scheduled(directory, "bc", "BC", self.policy, self.engine,
                                      self.scheduler, self.rng)


def build(cfg: Config, run: RunContext) -> BC:
    """BC on `cfg.data.path` (episodes with return >= bc.min_return when set), from the policy
    at `run.init_policy`, else `model.path`, else a tiny model with a tokenizer trained on
    the data. Its engine is the single-process torch one (one micro-batch per step)."""
    from archer.models.builders import build_policy

    s = cfg.bc
    assert cfg.data.path is not None  # Config checks it for algo=bc
    trajectories = read_trajectories(cfg.data.path)
    if s.min_return is not None:
        trajectories = [t for t in trajectories if t.episode_return >= s.min_return]
        if not trajectories:
            raise DatasetError(f"no episode of {cfg.data.path} has return >= "
                               f"bc.min_return={s.min_return}")
    policy = build_policy(cfg, trajectories, run.init_policy)
    engine = offline_engine(cfg, policy, lr=s.lr, batch_size=s.batch_size,
                            grad_clip=s.grad_clip, weight_decay=s.weight_decay)
    return BC(s, policy, engine, turn_examples(policy, trajectories), cfg.train.iterations,
              cfg.seed, episodes=len(trajectories))
