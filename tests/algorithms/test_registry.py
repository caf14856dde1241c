"""Every registered algorithm: built on tiny models, one learn() changes every trainable
parameter it owns and none it must not (frozen references, targets' gradients), with namespaced
metrics. TRL's "parameters changed" test, run over the registry as SB3 runs every algorithm."""

import pytest
import torch
import user_envs  # noqa: F401

from archer import algorithms
from archer.algorithms.api import RunContext
from archer.config import load_config
from archer.evaluation import collect
from archer.rollout.collector import InProcessCollector
from archer.rollout.seeds import episode_seeds

COMMON = ["env.id=user_envs:SayYes-v0", "model.max_context_tokens=64", "model.vocab_size=300",
          "generation.max_new_tokens=4", "rollout.num_workers=0", "rollout.envs_per_worker=8",
          "deepspeed.enabled=false", "deepspeed.micro_batch_size=4", "critic.hidden_dim=16"]
PER_ALGO = {
    "archer": ["archer.warmup_iters=0", "archer.critic.updates_per_iter=1",
               "archer.critic.batch_size=8", "archer.actor.updates_per_iter=1",
               "archer.actor.batch_size=4", "archer.actor.samples_per_state=2",
               "archer.actor.kl_coef=0.1"],
    "bc": ["bc.batch_size=64"],
    "reinforce": ["rollout.episodes_per_iter=8", "rollout.group_size=2",
                  "reinforce.micro_batches=2", "reinforce.kl_coef=0.1"],
    "ppo": ["rollout.episodes_per_iter=8", "ppo.micro_batches=2", "ppo.minibatches=1",
            "ppo.epochs=1", "ppo.kl_coef=0.1"],
    "filtered_bc": ["filtered_bc.batch_size=8", "filtered_bc.updates_per_iter=1",
                    "filtered_bc.percentile=0"],
    "chai": ["chai.critic.updates_per_iter=1", "chai.critic.batch_size=8", "chai.candidates=2"],
    "agro": ["rollout.episodes_per_iter=8", "rollout.group_size=2", "agro.micro_batches=2"],
    "refit": ["refit.batch_size=8"],
    "swift": ["swift.batch_size=8"],
    "dpo": ["dpo.batch_size=4"],
    "ilql": ["ilql.batch_size=8", "ilql.awac_beta=1.0"],
    "offline_archer": ["offline_archer.warmup_iters=0", "offline_archer.critic.updates_per_iter=1",
                       "offline_archer.critic.batch_size=8", "offline_archer.actor.batch_size=8",
                       "offline_archer.actor.updates_per_iter=1"],
}


# Variants whose parameters differ: PPO's value head on the policy (its parameters are the
# policy model's, so "policy" covers them).
CASES = {**{name: (name, args) for name, args in PER_ALGO.items()},
         "ppo+shared": ("ppo", [*PER_ALGO["ppo"], "ppo.value_model=shared"]),
         "agro+offline": ("agro", [*PER_ALGO["agro"], "agro.offline=true"])}


def test_every_algorithm_is_covered():
    assert set(PER_ALGO) == set(algorithms.ALGORITHMS)


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A dataset of coin-flip episodes and a tiny policy cloned from it (a short BC run)."""
    from archer.warm_start import train_bc

    tmp = tmp_path_factory.mktemp("registry")
    cfg = load_config(overrides=[*COMMON, "collect.agent=user_envs:coin_agent",
                                 "collect.episodes=32", "bc.epochs=1", f"output_dir={tmp}"])
    collect(cfg, tmp / "d.jsonl", progress=False)
    return tmp, train_bc(cfg, tmp / "d.jsonl", tmp / "sft", progress=False)["policy"]


def trainable(module):
    return {n: p.detach().clone() for n, p in module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_learn_changes_what_it_trains_and_nothing_frozen(case, start, tmp_path):
    data, policy_dir = start
    name, args = CASES[case]
    if name == "dpo" or case == "agro+offline":  # refused without a start (the reference)
        args = [*args, f"train.init_policy={policy_dir}"]
    cfg = load_config(overrides=[*COMMON, *args, f"algo={name}",
                                 f"output_dir={tmp_path}", f"data.path={data / 'd.jsonl'}"])
    algo = algorithms.build(cfg, RunContext(out=tmp_path, init_policy=policy_dir,
                                            corpus=["Answer yes or no.\n", "yes", "no"] * 5))
    owned = {"policy": algo.acting().policy.model}
    frozen = {}
    if name == "chai":  # the actor is frozen: only the critic learns
        frozen["policy"] = owned.pop("policy")
    if name in ("archer", "chai", "offline_archer"):
        owned["critic"] = algo.critic
    if name == "ppo" and algo.value is not None:
        owned["value"] = algo.value
    if case == "ppo+shared":
        assert any(n.startswith("value_head.") for n in trainable(owned["policy"]))
    if name == "ilql":  # its heads train with the policy; the targets move by Polyak only
        assert any(n.startswith("ilql_heads.q1.") for n in trainable(owned["policy"]))
    if name in ("archer", "reinforce", "ppo", "agro", "dpo"):
        frozen["reference"] = algo.ref
    before = {k: trainable(m) for k, m in owned.items()}
    frozen_before = {k: {n: p.clone() for n, p in m.state_dict().items()} for k, m in frozen.items()}
    target = algo.targets if name == "ilql" else getattr(algo, "target", None)
    target_before = ({n: p.clone() for n, p in target.state_dict().items()}
                     if name in ("archer", "chai", "ilql", "offline_archer") else {})

    new = []
    if algo.data == "online":
        collector = InProcessCollector(cfg, algo.acting().policy)
        # four task ids played twice each: the groups of a group baseline
        new = collector.collect([str(i // 2) for i in range(8)], episode_seeds(0, "train", 8))
        collector.close()
        # Rewards 1, 0, 1, 0, ... on the sampled episodes, so a return-weighted method has a
        # signal even when a one-epoch start never says exactly "yes".
        for i, traj in enumerate(new):
            traj.turns[-1].reward = float(i % 2 == 0)
    metrics = algo.learn(new, iteration=0)

    for k, module in owned.items():
        after = trainable(module)
        unchanged = [n for n in after if torch.equal(after[n], before[k][n]) and "wpe" not in n]
        assert unchanged == [], (k, unchanged)  # GPT-2's positions past the context get none
    for k, module in frozen.items():
        for n, p in module.state_dict().items():
            assert torch.equal(p, frozen_before[k][n]), (k, n)
        assert not any(p.requires_grad for p in module.parameters())
    if target_before:  # the target moves by Polyak averaging only, not by a gradient
        assert any(not torch.equal(p, target_before[n]) for n, p in target.state_dict().items())
        assert all(p.grad is None and not p.requires_grad for p in target.parameters())
    assert metrics and all("/" in k for k in metrics), sorted(metrics)
    assert all(v == 0.0 for k, v in metrics.items() if k.endswith("/skipped"))
