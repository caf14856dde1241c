"""The learner group on real Ray and real DeepSpeed (gloo on CPU): W ranks take the same steps
as one, the ranks save and resume exactly, and a dead rank or an impossible placement fails
fast with an error that says what to do. The runs are marked `distributed` (the second lane of
scripts/test.sh, which CI runs); the refusals run in the default lane."""

import json
import threading
import time
from pathlib import Path

import pytest
import ray
import torch
import user_envs  # noqa: F401
from resume import assert_resumes_exactly
from test_archer import QUIET, base_overrides, coin_sft  # noqa: F401
from transformers import AutoModelForCausalLM

from archer import loop
from archer.algorithms.api import RunContext
from archer.config import ConfigError, load_config
from archer.distributed import learner as learner_mod
from archer.distributed.learner import LearnerGroup, PlacementError
from archer.errors import LearnerGroupError
from archer.rollout.envs import env_info


@pytest.fixture(scope="module")
def ray_two_cpus():
    """One Ray instance for the module; each learner rank reserves half a CPU."""
    from archer.distributed.rollout import ensure_ray

    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


def context(tmp, init):
    """What the loop hands a builder: the SayYes corpus trains the tiny critic's tokenizer."""
    return RunContext(out=tmp, init_policy=init, corpus=env_info("user_envs:SayYes-v0").corpus)


def group_overrides(tmp, init, ranks, *extra):
    """ArCHer on SayYes with steps of 2 micro-batches (actor 16 rows of 8, critic 16 of 8),
    so two ranks take one micro-batch each."""
    return [*base_overrides(tmp, init), "archer.critic.micro_batch_size=8",
            "archer.critic.updates_per_iter=3", "archer.actor.updates_per_iter=1",
            "archer.warmup_iters=1", f"cluster.learner_ranks={ranks}",
            "cluster.cpus_per_learner=0.5", "eval.episodes=16", *extra]


def run(tmp, init, ranks, *extra, iterations=2):
    cfg = load_config(overrides=[*group_overrides(tmp, init, ranks, *extra),
                                 f"train.iterations={iterations}", "train.save_every=1"])
    return loop.run(cfg, **QUIET)


KEYS = ("critic/loss", "critic/q1_mean", "critic/v1_mean", "critic/grad_norm", "actor/loss",
        "actor/advantage_mean", "actor/grad_norm", "rollout/return_mean")


def curves(result):
    return [{k: h[k] for k in KEYS if k in h} for h in result["history"]]


def weights(result):
    model = AutoModelForCausalLM.from_pretrained(f"{result['checkpoint']}/policy")
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
@pytest.mark.parametrize("zero", [0, 2, 3])
def test_two_ranks_take_the_same_steps_as_one(tmp_path, coin_sft, zero):  # noqa: F811
    """Two ranks split every critic and actor step (and the fresh samples) and give the same
    metrics and weights as one rank on the same global batch, to float tolerance."""
    zero_key = f"deepspeed.zero_stage={zero}"
    one = run(tmp_path / "one", coin_sft, 1, zero_key)
    two = run(tmp_path / "two", coin_sft, 2, zero_key)
    assert_same_curves(curves(one), curves(two))
    assert two["history"][-1]["learner/ranks"] == 2.0
    wa, wb = weights(one), weights(two)
    moved = max(float((wa[k] - weights_at_start(coin_sft)[k]).abs().max()) for k in wa)
    assert moved > 1e-4  # the actor did train
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
@pytest.mark.parametrize("algo, extra", [
    # trajectory-level REINFORCE with GRPO's group baseline
    ("reinforce", ("rollout.group_size=4", "reinforce.baseline=group",
                   "reinforce.micro_batches=2", "reinforce.minibatches=2")),
    # token-level PPO with its separate value model (summed across ranks by module_step)
    ("ppo", ("ppo.micro_batches=2", "ppo.minibatches=2", "ppo.epochs=2")),
    ("filtered_bc", ("filtered_bc.batch_size=16", "filtered_bc.updates_per_iter=2")),
    ("agro", ("rollout.group_size=4", "agro.micro_batches=2")),
])
def test_two_ranks_of_each_method_take_the_same_steps_as_one(tmp_path, coin_sft, algo,  # noqa: F811
                                                             extra):
    """Each data-parallel method splits its steps over the ranks: the same metrics and final
    weights as one rank on the same global batch."""
    extra = (f"algo={algo}", *extra)
    one, two = run(tmp_path / "one", coin_sft, 1, *extra), run(tmp_path / "two", coin_sft, 2, *extra)
    assert_same_steps_and_weights(one, two, (f"{algo}/", "value/", "rollout/return_mean"))


def assert_same_steps_and_weights(one, two, prefixes):
    """Two runs of one and two ranks: the same metrics under `prefixes` (a gradient step
    among them) and the same final policy weights, to float tolerance."""
    a = [{k: v for k, v in h.items() if k.startswith(prefixes)} for h in one["history"]]
    b = [{k: v for k, v in h.items() if k.startswith(prefixes)} for h in two["history"]]
    assert [set(x) for x in a] == [set(x) for x in b]
    assert any(k.endswith("grad_norm") for k in a[-1])  # a step was taken and compared
    for x, y in zip(a, b, strict=True):
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), k
    assert two["history"][-1]["learner/ranks"] == 2.0
    wa, wb = weights(one), weights(two)
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
    return wa


CHAI = ("algo=chai", "chai.candidates=3", "chai.critic.batch_size=16",
        "chai.critic.micro_batch_size=8", "chai.critic.updates_per_iter=3", "chai.critic.lr=3e-3")


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
def test_two_chai_ranks_train_one_critic_and_hand_the_driver_its_chooser(
        tmp_path, coin_sft):  # noqa: F811
    """CHAI's critic steps and its reranked fresh samples split over two ranks: the same
    metrics and critic as a group of one; the driver acts through rank 0's chooser (the
    target critic, copied whenever it moved), and resuming gives it back."""
    one, two = run(tmp_path / "one", coin_sft, 1, *CHAI), run(tmp_path / "two", coin_sft, 2, *CHAI)
    a = [{k: v for k, v in h.items() if k.startswith(("critic/", "rollout/return_mean"))}
         for h in one["history"]]
    b = [{k: v for k, v in h.items() if k.startswith(("critic/", "rollout/return_mean"))}
         for h in two["history"]]
    assert [set(x) for x in a] == [set(x) for x in b] and "critic/grad_norm" in a[-1]
    for x, y in zip(a, b, strict=True):
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), k
    from safetensors.torch import load_file

    ha = load_file(f"{one['checkpoint']}/target_critic/heads.safetensors")
    hb = load_file(f"{two['checkpoint']}/target_critic/heads.safetensors")
    assert a[-1]["critic/grad_norm"] > 0  # the critic took steps (chai.critic.lr > 0)
    for k in ha:
        torch.testing.assert_close(hb[k], ha[k], rtol=1e-4, atol=1e-5, msg=k)
    assert two["history"][-1]["learner/ranks"] == 2.0

    cfg = load_config(overrides=[*group_overrides(tmp_path / "two", coin_sft, 2, *CHAI),
                                 "train.iterations=2", "train.resume=true"])
    group = LearnerGroup(cfg, context(tmp_path / "two", coin_sft))
    try:
        group.load(two["checkpoint"])
        acting = group.acting()
        assert acting.chooser is not None and acting.chooser_version == 2
        assert acting.version == 0 and not group.exports  # the frozen policy: no weights
        heads = {f"{name}.{k}": v for name in ("q1", "q2", "v1", "v2")
                 for k, v in getattr(acting.chooser.critic, name).state_dict().items()}
        for k in hb:
            torch.testing.assert_close(heads[k], hb[k], msg=k)
    finally:
        group.close()


@pytest.fixture(scope="module")
def coin_data(tmp_path_factory):
    """200 logged coin-flip episodes of SayYes (the offline methods' dataset)."""
    from archer.evaluation import collect

    tmp = tmp_path_factory.mktemp("coin_data")
    collect(load_config(overrides=["env.id=user_envs:SayYes-v0", "collect.agent=user_envs:coin_agent",
                                   "collect.episodes=200", f"output_dir={tmp}"]),
            tmp / "d.jsonl", progress=False)
    return tmp / "d.jsonl"


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
@pytest.mark.parametrize("algo, extra", [
    ("bc", ("bc.batch_size=32",)),  # trains with dropout on: the per-part RNG streams
    ("refit", ("refit.batch_size=16", "refit.lr=1e-3")),  # a step's rows: its episodes' turns
    ("swift", ("swift.batch_size=16", "swift.lr=1e-3")),  # Refit's step, per-task weights
    ("dpo", ("dpo.batch_size=16", "dpo.lr=1e-3")),  # micro-batches of whole pairs
    # the critic's steps through module_step (its gradients summed), the AWR actor's engine
    ("offline_archer", ("offline_archer.warmup_iters=0", "offline_archer.expectile=0.7",
                        "offline_archer.critic.updates_per_iter=3",
                        "offline_archer.critic.batch_size=32",
                        "offline_archer.critic.micro_batch_size=16",
                        "offline_archer.actor.updates_per_iter=3",
                        "offline_archer.actor.batch_size=16", "offline_archer.actor.lr=1e-3")),
    # micro-batches of whole episodes; the heads' Polyak targets, guide and files under ZeRO-3
    ("ilql", ("ilql.batch_size=16", "ilql.lr=1e-3")),
    ("ilql", ("ilql.batch_size=16", "ilql.lr=1e-3", "deepspeed.zero_stage=3")),
])
def test_two_ranks_of_an_offline_method_take_the_same_steps_as_one(tmp_path, coin_sft,  # noqa: F811
                                                                   coin_data, algo, extra):
    """BC and Refit cut every step's rows into batch_size / micro_batch_size parts in a
    DeepSpeed engine, DPO its pairs, and they split them over the ranks; offline ArCHer does
    the same for its AWR steps and splits its critic's micro-batches too: the same metrics and
    final weights as a group of one (one epoch: BC's 7 steps of 32 turns, Refit's and Swift's
    13 steps of 16 episodes, DPO's steps of 16 pairs; offline ArCHer's 3 critic and 3 actor
    steps; ILQL's 13 steps of 16 episodes, whose heads and their targets must match too)."""
    def offline(out, ranks):
        cfg = load_config(overrides=[
            *base_overrides(out, coin_sft), f"algo={algo}", f"data.path={coin_data}",
            f"cluster.learner_ranks={ranks}", "cluster.cpus_per_learner=0.5",
            "train.iterations=1", "train.save_every=1", "eval.episodes=16", *extra])
        return loop.run(cfg, **QUIET)

    one, two = offline(tmp_path / "one", 1), offline(tmp_path / "two", 2)
    prefixes = ("critic/", "actor/") if algo == "offline_archer" else (f"{algo}/",)
    wa = assert_same_steps_and_weights(one, two, prefixes)
    if algo == "ilql":  # rank 0 wrote the heads (gathered under ZeRO-3)
        from archer.algorithms.ilql import HEADS, load_heads

        (h1, t1, _), (h2, t2, _) = (load_heads(Path(r["checkpoint"]) / HEADS) for r in (one, two))
        for a, b in ((h1, h2), (t1, t2)):
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys()
            for k in sa:
                torch.testing.assert_close(sb[k], sa[k], rtol=1e-4, atol=1e-5, msg=k)
    moved = max(float((wa[k] - weights_at_start(coin_sft)[k]).abs().max()) for k in wa)
    assert moved > 1e-4  # the policy did train


_START = {}


def weights_at_start(path):
    if path not in _START:
        model = AutoModelForCausalLM.from_pretrained(path)
        _START[path] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return _START[path]


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
def test_a_group_of_one_equals_the_in_process_learner(tmp_path, coin_sft):  # noqa: F811
    """learner_ranks=1 (one rank on Ray) and 0 (in the driver) run the same steps (to float
    tolerance: the rank runs one torch thread, the driver its own count, which changes the
    order of float sums)."""
    a, b = curves(run(tmp_path / "a", coin_sft, 0)), curves(run(tmp_path / "b", coin_sft, 1))
    assert_same_curves(a, b)


def assert_same_curves(a, b):
    assert [set(x) for x in a] == [set(x) for x in b] and "actor/loss" in a[-1]
    for x, y in zip(a, b, strict=True):
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-5), k


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
def test_two_ranks_resume_exactly(tmp_path, coin_sft):  # noqa: F811
    """3 iterations straight equal 2, a checkpoint written by both ranks, and 1 resumed."""
    assert_resumes_exactly(tmp_path, lambda out: group_overrides(out, coin_sft, 2),
                           ("critic/", "actor/"))


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
def test_a_dead_rank_stops_the_group_at_once(tmp_path, coin_sft):  # noqa: F811
    cfg = load_config(overrides=group_overrides(tmp_path, coin_sft, 2,
                                                "cluster.rendezvous_timeout_s=60"))
    group = LearnerGroup(cfg, context(tmp_path, coin_sft))
    try:
        ray.kill(group.ranks[1], no_restart=True)
        # rank 0 fails on its own too (it learns from an empty store, or its collective loses
        # rank 1): the error names the death either way
        with pytest.raises(LearnerGroupError, match="rank 1 died during learn.*train.resume"):
            group.learn([], 0)
        assert group.ranks == [] and group.pg is None  # torn down: nothing left holding CPUs
    finally:
        group.close()


@pytest.mark.usefixtures("ray_two_cpus")
def test_an_impossible_placement_names_what_it_could_not_place(tmp_path, coin_sft):  # noqa: F811
    cfg = load_config(overrides=group_overrides(tmp_path, coin_sft, 2, "cluster.cpus_per_learner=8",
                                                "cluster.placement_timeout_s=2"))
    with pytest.raises(PlacementError, match=r"2 learner rank\(s\) of \{'CPU': 8.0\}"):
        LearnerGroup(cfg, context(tmp_path, coin_sft))


@pytest.mark.parametrize("extra, match", [
    (["algo=ilql"], r"ilql.batch_size / deepspeed.micro_batch_size = 8 / 8"),
    (["algo=ilql", "ilql.batch_size=16", "train.init_policy=null"], "algo=ilql in a learner"),
    (["algo=bc", "bc.batch_size=24"], r"bc.batch_size / deepspeed.micro_batch_size = 24 / 8"),
    (["algo=bc", "train.init_policy=null"], "starts from a saved policy"),
    (["algo=dpo", "dpo.batch_size=24"], r"dpo.batch_size / deepspeed.micro_batch_size = 24 / 8"),
    (["algo=offline_archer", "offline_archer.actor.batch_size=24"],
     r"offline_archer.actor.batch_size / deepspeed.micro_batch_size = 24 / 8"),
    (["algo=offline_archer"], r"offline_archer.critic.batch_size / micro_batch_size = 1\)"),
    (["algo=offline_archer", "train.init_policy=null"], "algo=offline_archer in a learner"),
    (["algo=refit", "refit.batch_size=24"], r"refit.batch_size / deepspeed.micro_batch_size"),
    (["algo=swift", "train.init_policy=null"], "algo=swift in a learner group starts from"),
    (["algo=chai", "chai.critic.batch_size=16", "chai.critic.micro_batch_size=16"],
     r"chai.critic.batch_size / micro_batch_size = 1\)"),
    (["algo=ppo", "ppo.micro_batches=3"], "must divide ppo.micro_batches"),
    (["algo=filtered_bc", "filtered_bc.batch_size=24"], "micro-batches of one step"),
    (["algo=reinforce", "rollout.group_size=4", "reinforce.micro_batches=3"],
     "must divide reinforce.micro_batches"),
    (["deepspeed.enabled=false"], "deepspeed.enabled"),
    (["archer.critic.micro_batch_size=16"], "micro-batches of one critic step"),
    (["cluster.learner_ranks=4"], "micro-batches of one actor step"),
])
def test_group_settings_that_cannot_split_are_refused(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=[*group_overrides(tmp_path, "x", 2), *extra])


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
def test_a_rank_killed_mid_run_restarts_the_group_from_the_checkpoint(tmp_path, coin_sft,  # noqa: F811
                                                                        monkeypatch):
    """Rank 1 is killed after the first iteration's row is written: the loop rebuilds the
    group from the last checkpoint and the run ends where an uninterrupted one does."""
    groups = []
    real_init = LearnerGroup.__init__

    def recording_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        groups.append(self)

    monkeypatch.setattr(learner_mod.LearnerGroup, "__init__", recording_init)
    straight = run(tmp_path / "a", coin_sft, 2, iterations=3)
    metrics = tmp_path / "b" / "metrics.jsonl"

    def kill_after_the_first_row():
        while not (metrics.is_file() and any(
                json.loads(line)["iteration"] == 0.0 for line in metrics.read_text().splitlines()
                if line.strip())):
            time.sleep(0.2)
        ray.kill(groups[-1].ranks[1], no_restart=True)

    killer = threading.Thread(target=kill_after_the_first_row, daemon=True)
    killer.start()
    restarted = run(tmp_path / "b", coin_sft, 2, iterations=3)
    killer.join(timeout=5)
    assert restarted["learner_restarts"] == 1 and len(groups) == 3  # straight, b, b again
    assert restarted["before"] == straight["before"]
    keys = [k for k in straight["history"][-1] if k.startswith(("critic/", "actor/", "eval/"))]
    assert keys and {k: restarted["history"][-1][k] for k in keys} == {
        k: straight["history"][-1][k] for k in keys}


def workers_run(out, init, *extra):
    """ArCHer on SayYes with two Ray rollout workers, 3 iterations (the actor from the second)."""
    over = [*base_overrides(out, init), "rollout.num_workers=2", "rollout.envs_per_worker=8",
            "train.iterations=3", "archer.warmup_iters=1", "archer.critic.updates_per_iter=3",
            "archer.actor.updates_per_iter=1", "eval.episodes=16", *extra]
    return loop.run(load_config(overrides=over), **QUIET)


@pytest.mark.distributed
@pytest.mark.usefixtures("ray_two_cpus")
def test_fresh_samples_on_the_rollout_workers_equal_the_learners(tmp_path, coin_sft):  # noqa: F811
    """archer.fresh_samples=rollout sends the critic phase's fresh utterances to the two Ray
    rollout workers in one request: each row has its own seed and the workers hold the same
    weights, so the critic trains on the same targets as with the learner's own samples."""
    learner = workers_run(tmp_path / "l", coin_sft, "archer.fresh_samples=learner")
    rollout = workers_run(tmp_path / "r", coin_sft, "archer.fresh_samples=rollout")
    assert_same_curves(curves(learner), curves(rollout))
    assert learner["history"][-1]["progress/policy_tokens"] == (
        rollout["history"][-1]["progress/policy_tokens"])  # the workers' tokens are counted


@pytest.mark.distributed
def test_archer_trains_the_same_through_the_token_engine_backend(tmp_path, coin_sft):  # noqa: F811
    """rollout.backend=vllm_fake (the vllm backend's interface, HF underneath): the workers
    take every push as buckets and sample rollouts and the critic's fresh utterances through
    the engine; ArCHer's curves equal the HF workers', and the learner's rescoring of the
    engine's ids matches their log-probs."""
    def backend_run(out, backend):
        return workers_run(out, coin_sft, "archer.fresh_samples=rollout",
                           f"rollout.backend={backend}", "cluster.weight_bucket_mb=0.05")

    hf, engine = backend_run(tmp_path / "hf", "hf"), backend_run(tmp_path / "e", "vllm_fake")
    assert_same_curves(curves(hf), curves(engine))
    gaps = [h["rollout/logp_mismatch_max"] for h in engine["history"]
            if "rollout/logp_mismatch_max" in h]
    assert len(gaps) == 3 and max(gaps) < 1e-4  # after every push, the same distribution


@pytest.mark.distributed
def test_a_learner_group_takes_its_fresh_samples_from_the_rollout_workers(tmp_path, coin_sft):  # noqa: F811
    """archer.fresh_samples=rollout with two learner ranks: each rank asks the two rollout
    workers for its share of the critic's fresh utterances; the same curves and token counts
    as the ranks sampling them themselves."""
    def group_run(out, where):
        over = [*group_overrides(out, coin_sft, 2), "rollout.num_workers=2",
                "rollout.envs_per_worker=8", "rollout.num_cpus_per_worker=0.5",
                f"archer.fresh_samples={where}", "train.iterations=3"]
        return loop.run(load_config(overrides=over), **QUIET)

    learner, rollout = group_run(tmp_path / "l", "learner"), group_run(tmp_path / "r", "rollout")
    assert_same_curves(curves(learner), curves(rollout))
    assert learner["history"][-1]["progress/policy_tokens"] == (
        rollout["history"][-1]["progress/policy_tokens"])
