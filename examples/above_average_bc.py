"""A user's own algorithm, registered from outside archer: above-average BC.

Each iteration it clones the new episodes whose return beats that iteration's mean (on-policy,
no store), one NLL step on their agent turns, on the token ids that were sampled. Its settings
come from `algo_kwargs` (lr, default 1e-4). Register it by naming this module in
$ARCHER_PLUGINS, then use `algo=above_average_bc` anywhere archer takes an algo:

    ARCHER_PLUGINS=examples.above_average_bc archer train algo=above_average_bc
    ARCHER_PLUGINS=examples.above_average_bc archer bench --config configs/bench/smoke.yaml \\
        'methods=[{name: archer}, {name: above_average_bc}]'

(run from the repository root, so that `examples` is importable; docs/benchmark.md).
"""

from __future__ import annotations

from pathlib import Path

import torch

from archer.algorithms import register
from archer.algorithms.api import Acting, engine_acting, save_policy, start_policy
from archer.algorithms.bc import turn_examples
from archer.algorithms.losses import nll_loss
from archer.algorithms.updates import policy_step
from archer.errors import CheckpointError


class AboveAverageBC:
    data = "online"

    def __init__(self, policy, engine, micro_batch_size):
        self.policy, self.engine, self.micro_batch_size = policy, engine, micro_batch_size
        self.version = 0

    def learn(self, new, iteration):
        mean = sum(t.episode_return for t in new) / max(len(new), 1)
        kept = [t for t in new if t.episode_return > mean]
        examples = turn_examples(self.policy, kept)
        if not examples:
            return {"above_average_bc/kept": 0.0}
        rows = self.policy.batch([o for o, _ in examples], [a for _, a in examples])
        n = float(max(rows.action_tokens, 1))

        def loss(logp: torch.Tensor, sub, idx):
            return nll_loss(logp, sub.action_mask.to(logp.device), n, prefix="above_average_bc")

        m = policy_step(self.engine, self.policy, rows, loss, micro_batch_size=None,
                        prefix="above_average_bc")
        self.policy.model.eval()
        self.version += 1
        return m | {"above_average_bc/kept": float(len(kept))}

    def acting(self) -> Acting:
        return engine_acting(self.policy, self.engine, self.version)

    def save(self, directory: Path) -> None:
        save_policy(self.policy, self.engine, directory)
        (directory / "above_average_bc.txt").write_text(str(self.version))

    def load(self, directory: Path) -> None:
        try:
            self.engine.load_checkpoint(directory / "engine")
            self.version = int((directory / "above_average_bc.txt").read_text())
        except (OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"cannot resume above-average BC from {directory}: {err}") from None
        self.policy.model = self.engine.module
        self.policy.model.eval()


def build(cfg, run):
    lr = float(cfg.algo_kwargs.get("lr", 1e-4))
    # one optimizer step per iteration over however many rows were kept: the engine's
    # accumulation is set for batches of deepspeed.micro_batch_size rows
    policy, engine, _ = start_policy(cfg, run, "above-average BC", lr=lr,
                                     batch_size=cfg.deepspeed.micro_batch_size, grad_clip=1.0)
    return AboveAverageBC(policy, engine, cfg.deepspeed.micro_batch_size)


register("above_average_bc", __name__, "online (user plugin): NLL on this iteration's "
         "episodes with return above its mean")
