"""The loop with a fake algorithm (tests/fake_algorithm.py): phase order and timing keys,
episode seeds, weight versions, non-finite accounting, checkpoints and resume."""

import json

import pytest
import user_envs  # noqa: F401

from archer import algorithms, loop
from archer.config import load_config
from archer.errors import DistributedError, NonFiniteError
from archer.rollout.seeds import episode_seed

QUIET = {"progress": False, "log": lambda *_: None}


@pytest.fixture()
def fake(monkeypatch):
    monkeypatch.setitem(algorithms.ALGORITHMS, "fake", "fake_algorithm")
    built = []
    import fake_algorithm

    real = fake_algorithm.build
    monkeypatch.setattr(fake_algorithm, "build", lambda cfg, run: built.append(real(cfg, run))
                        or built[-1])
    return built


def overrides(tmp_path, init, *extra):
    return ["algo=fake", "env.id=user_envs:SayYes-v0", f"output_dir={tmp_path}",
            f"train.init_policy={init}", "rollout.num_workers=0", "rollout.episodes_per_iter=4",
            "rollout.envs_per_worker=4", "generation.max_new_tokens=4", "train.eval_every=2",
            "train.eval_episodes=4", "eval.episodes=4", "train.tensorboard=false", *extra]


@pytest.fixture(scope="module")
def init(tmp_path_factory, ):
    import gymnasium as gym

    from archer.models.policy import Policy
    from archer.models.tiny import build_tiny_policy, train_tokenizer

    env = gym.make("user_envs:SayYes-v0").unwrapped
    tok = train_tokenizer(env.corpus(), vocab_size=300)
    path = tmp_path_factory.mktemp("fake") / "policy"
    Policy(build_tiny_policy(tok, "tiny", max_positions=64, seed=0), tok).save_pretrained(path)
    return path


def test_phases_seeds_versions_and_metrics(tmp_path, init, fake):
    result = loop.run(load_config(overrides=overrides(tmp_path, init, "train.iterations=3")),
                      **QUIET)
    algo = fake[0]
    assert [it for it, _ in algo.seen] == [0, 1, 2]
    seeds = [s for _, batch in algo.seen for s in batch]
    assert seeds == [episode_seed(0, "train", i) for i in range(12)]  # unique over the run
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [-1, 0, 1, 2]
    m0, m1, m2 = lines[1:]
    assert {"time/collect_s", "time/learn_s", "time/sync_s", "time/iteration_s"} <= set(m0)
    assert "time/eval_s" not in m0 and "time/eval_s" in m1 and "time/save_s" in m2
    assert [m["progress/env_episodes"] for m in (m0, m1, m2)] == [4.0, 8.0, 12.0]
    assert [m["policy_version"] for m in (m0, m1, m2)] == [1.0, 2.0, 3.0]
    assert m0["fake/episodes"] == 4.0
    # the learner rescores the stored ids of the acting weights to float noise
    assert all(m["rollout/logp_mismatch_max"] < 1e-4 for m in (m0, m1, m2))
    assert result["before"]["eval/return_greedy"] is not None and result["after"] is not None
    assert json.loads((tmp_path / "checkpoint" / "COMPLETE").read_text()) == {
        "iteration": 3, "algo": "fake"}


def test_resume_continues_the_iteration_and_the_episode_count(tmp_path, init, fake):
    loop.run(load_config(overrides=overrides(tmp_path, init, "train.iterations=2")), **QUIET)
    result = loop.run(load_config(overrides=overrides(
        tmp_path, init, "train.iterations=3", "train.resume=true")), **QUIET)
    resumed = fake[1]
    assert resumed.seen == [(2, [episode_seed(0, "train", i) for i in range(8, 12)])]
    assert [h["iteration"] for h in result["history"]] == [2.0]
    assert result["history"][0]["policy_version"] == 3.0  # the saved version, then one more


def test_skipped_steps_count_against_max_nonfinite(tmp_path, init, fake):
    cfg = load_config(overrides=overrides(tmp_path, init, "train.iterations=5",
                                          "train.max_nonfinite=1"))
    with pytest.raises(NonFiniteError, match="2 non-finite losses"):
        loop.run(cfg, **QUIET)


def test_a_multi_rank_launch_is_refused(tmp_path, init, fake, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(DistributedError, match="cluster.learner_ranks=N"):
        loop.run(load_config(overrides=overrides(tmp_path, init)), **QUIET)


def test_progress_counts_turns_tokens_gradient_steps_and_seconds_across_a_resume(tmp_path, init):
    """The benchmark's x-axes: REINFORCE takes one optimizer step per
    iteration and generates nothing itself, so its policy tokens are the rollouts'; a resumed
    run continues every counter from the checkpoint."""
    over = overrides(tmp_path, init, "algo=reinforce", "rollout.group_size=2",
                     "train.save_every=1")
    loop.run(load_config(overrides=[*over, "train.iterations=2"]), **QUIET)
    loop.run(load_config(overrides=[*over, "train.iterations=3", "train.resume=true"]), **QUIET)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in lines] == [-1, 0, 1, 2]
    start, rows = lines[0], lines[1:]
    assert start["progress/env_episodes"] == start["progress/gradient_steps"] == 0.0
    assert [m["progress/env_episodes"] for m in rows] == [4.0, 8.0, 12.0]
    assert [m["progress/env_turns"] for m in rows] == [4.0, 8.0, 12.0]  # SayYes: one turn each
    assert [m["progress/gradient_steps"] for m in rows] == [1.0, 2.0, 3.0]
    tokens = [m["rollout/tokens"] for m in rows]
    assert [m["progress/policy_tokens"] for m in rows] == [
        sum(tokens[:1]), sum(tokens[:2]), sum(tokens)]
    walls = [m["progress/wall_s"] for m in rows]
    assert 0 < walls[0] < walls[1] < walls[2]
    assert walls[2] - walls[1] == pytest.approx(
        rows[2]["time/collect_s"] + rows[2]["time/learn_s"] + rows[2]["time/sync_s"])


def test_the_learners_own_samples_count_as_policy_tokens(tmp_path, init):
    """ArCHer generates fresh utterances for its critic's V targets in the learner: they count
    (every critic step after the warm-up samples one per transition of its batch)."""
    over = overrides(tmp_path, init, "algo=archer", "archer.warmup_iters=0",
                     "archer.critic.updates_per_iter=2", "archer.critic.batch_size=4",
                     "archer.critic.micro_batch_size=4", "archer.actor.batch_size=4",
                     "archer.actor.updates_per_iter=1", "deepspeed.micro_batch_size=4", "train.iterations=1", "train.eval_every=0",
                     "train.eval_start=false")
    result = loop.run(load_config(overrides=over), **QUIET)
    m = result["history"][-1]
    assert m["progress/policy_tokens"] > m["rollout/tokens"]
    assert m["progress/gradient_steps"] >= 3  # 2 critic steps, >= 1 actor step


def test_logp_gap_rescores_every_turn_in_parts(init):
    """The health check scores its turns a few rows per forward: every row is read (a stored
    log-prob off by 0.5 in any part shows as a gap of 0.5), and untouched rows agree with
    their stored log-probs to float noise whatever the part size."""
    from archer.algorithms.api import Acting
    from archer.models.policy import Policy, Sampling
    from archer.types import Trajectory, Turn

    policy = Policy.from_pretrained(init)
    observations = [f"Question {i}: " + "is it an animal? " * (i % 4) for i in range(11)]
    out = policy.generate(observations, Sampling(max_new_tokens=4, temperature=1.0),
                          seeds=list(range(11)))
    turns = [Turn(o, "", 0.0, False, False, logprobs=list(lp), action_ids=list(a))
             for o, a, lp in zip(observations, out.action_ids, out.logprobs, strict=True)]
    episodes = [Trajectory("e", "t", turns[:6], policy_version=3),
                Trajectory("e", "t", turns[6:], policy_version=3)]
    acting = Acting(policy=policy, version=3)
    for rows in (1, 3, 64):
        assert loop.logp_gap(acting, episodes, 1.0, rows_per_forward=rows)[
            "rollout/logp_mismatch_max"] < 1e-4
    turns[9].logprobs[0] += 0.5  # the last part of 3, 4 and of 8 rows
    for rows in (1, 3, 4, 8, 64):
        gap = loop.logp_gap(acting, episodes, 1.0, rows_per_forward=rows)
        assert gap["rollout/logp_mismatch_max"] == pytest.approx(0.5, abs=1e-4)
    assert loop.logp_gap(acting, episodes, 1.0, limit=9)["rollout/logp_mismatch_max"] < 1e-4
    assert loop.logp_gap(Acting(policy=policy, version=4), episodes, 1.0) == {}
