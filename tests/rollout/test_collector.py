"""In-process rollout collection: chunks, per-episode seeds, log-probs, weight versions."""

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
import user_envs
from episodes import assert_same_episodes

from archer.config import load_config
from archer.models.policy import Policy, Sampling
from archer.rollout.batched import BatchedTextEnvs, run_episodes
from archer.rollout.collector import InProcessCollector, plan_chunks, utterance_seed

TASKS = [str(i) for i in range(1, 9)] + ["3", "7"]
SEEDS = list(range(100, 110))


def cfg_for(tmp_path, *extra):
    return load_config(
        overrides=[
            "env.id=user_envs:GuessNumber-v0",
            f"output_dir={tmp_path}",
            "model.max_context_tokens=256",
            "generation.max_new_tokens=12",
            *extra,
        ]
    )


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Generate on one thread, as a worker does: on a shared 2-core machine two OpenMP threads
    can run 10x slower than one whenever another process takes a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def policy(tiny_policy):
    """A private copy of the session's tiny policy (some tests load other weights into it)."""
    return Policy(
        copy.deepcopy(tiny_policy.model), tiny_policy.tokenizer, max_context_tokens=256, reserve=12
    )


def collect(cfg, policy, tasks=TASKS, seeds=SEEDS, version=None):
    collector = InProcessCollector(cfg, policy)
    try:
        if version is not None:
            collector.set_weights(policy.model.state_dict(), version)
        return collector.collect(tasks, seeds), collector.last_stats
    finally:
        collector.close()


def test_plan_chunks_splits_consecutive_episodes():
    chunks = plan_chunks(["a", "b", "c", "d", "e"], [5, 6, 7, 8, 9], 2)
    assert chunks == [[("a", 5), ("b", 6)], [("c", 7), ("d", 8)], [("e", 9)]]
    assert plan_chunks([], [], 3) == []
    with pytest.raises(ValueError, match="2 seeds for 3 task ids"):
        plan_chunks(["a", "b", "c"], [1, 2], 2)
    with pytest.raises(ValueError, match="chunk_size"):
        plan_chunks(["a"], [1], 0)


def test_utterance_seed_depends_on_episode_seed_and_turn_only():
    assert utterance_seed(7, 3) == utterance_seed(7, 3)
    seeds = {utterance_seed(s, t) for s in range(50) for t in range(50)}
    assert len(seeds) == 2500  # no collisions, e.g. between (s, t + 1) and (s + 1, t)
    assert all(0 <= s < 2**63 for s in seeds)


def test_context_agent_sees_seed_and_turn_and_stores_logprobs():
    envs = BatchedTextEnvs("user_envs:GuessNumber-v0", 3)
    calls = []

    def agent(observations, contexts):
        calls.append(contexts)
        actions = [user_envs.bisect_agent(o) for o in observations]
        return actions, [{"logprobs": [float(c.seed), float(c.turn)]} for c in contexts]

    trajs = run_episodes(
        envs, agent, ["1", "2", "8", "5"], seeds=[40, 41, 42, 43], agent_context=True
    )
    assert [t.seed for t in trajs] == [40, 41, 42, 43]
    for traj in trajs:
        assert traj.success
        assert [turn.logprobs for turn in traj.turns] == [
            [float(traj.seed), float(k)] for k in range(traj.length)
        ]
    assert {c.task_id for c in calls[0]} == {"1", "2", "8"}  # three slots at first

    def bad_agent(observations, contexts):
        return ["Is it 1?"] * len(observations), [{"value": 1.0}] * len(observations)

    with pytest.raises(RuntimeError, match="unknown per-turn extras"):
        run_episodes(envs, bad_agent, ["1"], agent_context=True)
    envs.close()


def test_trajectories_carry_version_and_sampled_token_logprobs(tmp_path, policy):
    cfg = cfg_for(tmp_path, "rollout.envs_per_worker=5")
    trajs, stats = collect(cfg, policy, version=3)
    assert len(trajs) == len(TASKS) and all(t.policy_version == 3 for t in trajs)
    assert all(t.tokenizer == policy.fingerprint for t in trajs)
    assert [t.task_id for t in trajs] == TASKS and [t.seed for t in trajs] == SEEDS
    turns = [turn for t in trajs for turn in t.turns]
    assert all(t.agent == "policy" and t.length == 6 for t in trajs)  # random policy: 6 turns
    assert all(0 < len(u.action_ids) <= 12 for u in turns)
    assert all(len(u.logprobs) == len(u.action_ids) and max(u.logprobs) <= 0 for u in turns)
    assert stats["rollout/tokens"] == sum(len(u.action_ids) for u in turns)
    assert stats["rollout/tokens_per_s"] > 0 and stats["rollout/restarts"] == 0
    # Each utterance is the one its own seed gives alone in a batch of one, and its log-probs
    # are those of its sampled tokens.
    for traj in trajs[:3]:
        for k, turn in enumerate(traj.turns):
            gen = policy.generate(
                [turn.observation], Sampling(max_new_tokens=12), seeds=[utterance_seed(traj.seed, k)]
            )
            assert gen.texts == [turn.action] and gen.action_ids == [turn.action_ids]
            np.testing.assert_allclose(gen.logprobs[0], turn.logprobs, rtol=0, atol=1e-4)


def test_same_tasks_and_seeds_give_the_same_trajectories(tmp_path, policy):
    cfg = cfg_for(tmp_path, "rollout.envs_per_worker=4")
    first, _ = collect(cfg, policy)
    second, _ = collect(cfg, policy)
    assert_same_episodes(first, second)
    other_seeds, _ = collect(cfg, policy, seeds=[s + 1000 for s in SEEDS])
    assert [t.turns[0].action for t in other_seeds] != [t.turns[0].action for t in first]


def test_trajectories_do_not_depend_on_chunk_size(tmp_path, policy):
    by_two, _ = collect(cfg_for(tmp_path, "rollout.envs_per_worker=2"), policy)
    by_five, _ = collect(cfg_for(tmp_path, "rollout.envs_per_worker=5"), policy)
    assert_same_episodes(by_two, by_five, exact_logprobs=False)  # padding changes the last bits


def test_trajectories_do_not_depend_on_rows_per_forward(tmp_path, policy, monkeypatch):
    # generation.batch_size bounds the rows of one forward when many envs act together.
    rows: list[int] = []
    real = Policy._generate_chunk

    def counted(self, prompts, *args, **kwargs):
        rows.append(len(prompts))
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(Policy, "_generate_chunk", counted)
    whole, _ = collect(cfg_for(tmp_path, "rollout.envs_per_worker=10"), policy)
    assert max(rows) == 10
    rows.clear()
    by_three, _ = collect(cfg_for(tmp_path, "rollout.envs_per_worker=10",
                                  "generation.batch_size=3"), policy)
    assert max(rows) == 3
    assert_same_episodes(whole, by_three, exact_logprobs=False)


def test_set_weights_loads_a_copy_and_only_records_the_policys_own(tmp_path, policy, monkeypatch):
    collector = InProcessCollector(cfg_for(tmp_path, "rollout.envs_per_worker=5"), policy)
    own = policy.model.state_dict()
    with monkeypatch.context() as m:
        m.setattr(policy.model, "load_state_dict", lambda *a, **k: pytest.fail("reloaded"))
        collector.set_weights(own, 1)
    assert collector.version == 1
    perturbed = {k: v + 0.5 for k, v in own.items()}
    collector.set_weights(perturbed, 2)
    assert collector.version == 2
    for name, value in policy.model.state_dict().items():
        assert torch.equal(value, perturbed[name])
    trajs = collector.collect(TASKS[:2], SEEDS[:2])
    assert all(t.policy_version == 2 for t in trajs)
    collector.close()


def test_collector_module_does_not_import_ray():
    code = "import sys, archer.rollout.collector; assert 'ray' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
