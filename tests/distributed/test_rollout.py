"""Ray rollout workers on a real local Ray instance (num_cpus=2): equal to in-process
collection for the same seeds and weights, weight pushes, and a worker dying mid-collection."""

import copy
import os
import time
from pathlib import Path

import gymnasium as gym
import pytest
import ray
import torch
from episodes import assert_same_episodes
from user_envs import GuessNumberEnv

from archer.config import load_config
from archer.distributed.rollout import RayCollector, ensure_ray
from archer.models.policy import Policy
from archer.rollout.collector import InProcessCollector

TASKS = [str(i) for i in range(1, 9)]  # every task once: each id must come back exactly once
SEEDS = list(range(200, 208))


class TriggeredGuessNumber(GuessNumberEnv):
    """GuessNumber that misbehaves (`_fault`) at the reset of task t while
    `trigger_dir/<kind>-t` exists; the file is removed first, so each arming hits one worker."""

    kind = ""

    def __init__(self, trigger_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.trigger_dir = Path(trigger_dir)

    def _begin(self, task_id: str) -> str:
        trigger = self.trigger_dir / f"{self.kind}-{task_id}"
        if trigger.exists():
            trigger.unlink()
            self._fault()
        return super()._begin(task_id)

    def _fault(self) -> None:
        raise NotImplementedError


class CrashOnceGuessNumber(TriggeredGuessNumber):
    """Its worker process exits."""

    kind = "crash"

    def _fault(self) -> None:
        os._exit(1)


class HangOnceGuessNumber(TriggeredGuessNumber):
    """It sleeps far past any test timeout."""

    kind = "hang"

    def _fault(self) -> None:
        time.sleep(3600)


gym.register(id="CrashOnceGuessNumber-v0", entry_point=CrashOnceGuessNumber)
gym.register(id="HangOnceGuessNumber-v0", entry_point=HangOnceGuessNumber)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Generate on one thread, as a worker does: on a shared 2-core machine two OpenMP threads
    can run 10x slower than one whenever another process takes a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def policy_dir(tiny_policy, tmp_path_factory):
    path = tmp_path_factory.mktemp("policy")
    tiny_policy.save_pretrained(path)
    return path


def cfg_for(tmp_path, *extra):
    return load_config(
        overrides=[
            "env.id=user_envs:GuessNumber-v0",
            f"output_dir={tmp_path}",
            "rollout.envs_per_worker=3",
            "model.max_context_tokens=256",
            "generation.max_new_tokens=12",
            *extra,
        ]
    )


def in_process(cfg, policy_dir, state_dict, version):
    policy = Policy.from_pretrained(
        policy_dir, max_context_tokens=256, reserve=cfg.generation.max_new_tokens
    )
    collector = InProcessCollector(cfg, policy)
    try:
        collector.set_weights(state_dict, version)
        return collector.collect(TASKS, SEEDS)
    finally:
        collector.close()


def perturbed(state_dict, scale=0.05):
    model_state = copy.deepcopy(state_dict)
    generator = torch.Generator().manual_seed(0)
    return {
        k: v + scale * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v
        for k, v in model_state.items()
    }


def test_workers_equal_in_process_and_follow_pushed_weights(tmp_path, policy_dir, tiny_policy):
    cfg = cfg_for(tmp_path)
    base = tiny_policy.model.state_dict()
    collector = RayCollector(cfg, policy_dir, num_workers=2)
    try:
        collector.set_weights(base, 1)
        first = collector.collect(TASKS, SEEDS)
        assert_same_episodes(first, in_process(cfg, policy_dir, base, 1), exact_logprobs=False)
        assert collector.last_stats["rollout/tokens"] == sum(
            len(u.logprobs) for t in first for u in t.turns
        )
        assert collector.last_stats["rollout/tokens_per_s"] > 0

        new = perturbed(base)
        collector.set_weights(new, 2)
        assert collector.ping() == [2, 2]
        second = collector.collect(TASKS, SEEDS)
        assert all(t.policy_version == 2 for t in second)
        assert [t.turns[0].action for t in second] != [t.turns[0].action for t in first]
        assert_same_episodes(second, in_process(cfg, policy_dir, new, 2), exact_logprobs=False)
        assert collector.restarts == 0
    finally:
        collector.close()


def test_a_dead_worker_is_replaced_and_its_chunk_played_again(tmp_path, policy_dir, tiny_policy):
    cfg = cfg_for(
        tmp_path,
        "env.id=test_rollout:CrashOnceGuessNumber-v0",
        f"env.kwargs.trigger_dir={tmp_path}",
        "rollout.max_restarts=1",
    )
    collector = RayCollector(cfg, policy_dir, num_workers=2)
    try:
        collector.set_weights(tiny_policy.model.state_dict(), 5)
        clean = collector.collect(TASKS, SEEDS)

        (tmp_path / "crash-5").touch()  # task 5 is in the second chunk of three
        recovered = collector.collect(TASKS, SEEDS)
        assert not (tmp_path / "crash-5").exists()  # the env did exit a worker
        assert collector.restarts == 1 and collector.last_stats["rollout/restarts"] == 1
        assert [t.task_id for t in recovered] == TASKS  # each exactly once, in order
        assert_same_episodes(recovered, clean, exact_logprobs=False)
        assert collector.ping() == [5, 5]

        (tmp_path / "crash-2").touch()  # a second death is one more than max_restarts allows
        with pytest.raises(RuntimeError, match=r"max_restarts=1\); giving up"):
            collector.collect(TASKS, SEEDS)
    finally:
        collector.close()


def test_a_hung_worker_is_replaced_after_the_chunk_timeout(tmp_path, policy_dir, tiny_policy):
    cfg = cfg_for(
        tmp_path,
        "env.id=test_rollout:HangOnceGuessNumber-v0",
        f"env.kwargs.trigger_dir={tmp_path}",
        "rollout.chunk_timeout_s=20",
    )
    collector = RayCollector(cfg, policy_dir, num_workers=2)
    try:
        collector.set_weights(tiny_policy.model.state_dict(), 3)
        clean = collector.collect(TASKS, SEEDS)

        (tmp_path / "hang-4").touch()  # task 4 is in the second chunk of three
        start = time.perf_counter()
        recovered = collector.collect(TASKS, SEEDS)
        assert not (tmp_path / "hang-4").exists()  # a worker did take the chunk and hang
        assert time.perf_counter() - start >= 20  # nothing was given up early
        assert collector.restarts == 1 and collector.last_stats["rollout/restarts"] == 1
        assert [t.task_id for t in recovered] == TASKS  # each exactly once, in order
        assert_same_episodes(recovered, clean, exact_logprobs=False)
        assert collector.ping() == [3, 3]  # the replacement acts with the pushed weights
    finally:
        collector.close()


def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path):
    with pytest.raises(RuntimeError, match="(?s)failed to start.*no Hugging Face checkpoint"):
        RayCollector(cfg_for(tmp_path), tmp_path / "missing", num_workers=1)


def test_workers_act_through_a_pushed_chooser_as_in_process(tmp_path, policy_dir, tiny_policy):
    """CHAI's acting rule (a critic reranking 3 candidates) pickled to the workers: the same
    episodes as in-process with the same rule, not those of the plain policy."""
    from archer.algorithms.chai import CriticChooser
    from archer.config import CriticConfig
    from archer.models.critic import build_critic

    cfg = cfg_for(tmp_path)
    corpus = ["Find the number.\n", "Is it more than 4? Yes.\n", "Is it 3? No.\n"] * 10
    critic = build_critic(CriticConfig(hidden_dim=16), corpus, seed=3).eval()
    chooser = CriticChooser(critic, candidates=3)
    base = tiny_policy.model.state_dict()

    policy = Policy.from_pretrained(policy_dir, max_context_tokens=256,
                                    reserve=cfg.generation.max_new_tokens)
    local = InProcessCollector(cfg, policy)
    try:
        local.set_weights(base, 1)
        plain = local.collect(TASKS, SEEDS)
        local.set_chooser(chooser, 1)
        reranked = local.collect(TASKS, SEEDS)
    finally:
        local.close()
    assert [t.turns[0].action for t in reranked] != [t.turns[0].action for t in plain]

    collector = RayCollector(cfg, policy_dir, num_workers=2)
    try:
        collector.set_weights(base, 1)
        collector.set_chooser(chooser, 1)
        assert collector.chooser_version == 1
        assert_same_episodes(collector.collect(TASKS, SEEDS), reranked, exact_logprobs=False)
    finally:
        collector.close()


def test_token_engine_workers_equal_hf_workers_through_bucketed_pushes(tmp_path, policy_dir,
                                                                      tiny_policy):
    """rollout.backend=vllm_fake: each worker samples through a token engine (the vllm
    backend's interface) that takes its weights only as buckets (10 kB here, so a push is
    many); its episodes and fresh samples equal the in-process HF policy's, before and after
    a push."""
    from archer.models.policy import Sampling
    from archer.rollout.vllm_backend import state_buckets

    cfg = cfg_for(tmp_path, "rollout.backend=vllm_fake", "rollout.num_workers=1",
                  "cluster.weight_bucket_mb=0.01")
    base = tiny_policy.model.state_dict()
    collector = RayCollector(cfg, policy_dir, num_workers=1)
    try:
        collector.set_weights(base, 1)
        assert_same_episodes(collector.collect(TASKS, SEEDS),
                             in_process(cfg, policy_dir, base, 1), exact_logprobs=False)
        new = perturbed(base)
        collector.set_weights(new, 2)
        second = collector.collect(TASKS, SEEDS)
        assert_same_episodes(second, in_process(cfg, policy_dir, new, 2), exact_logprobs=False)
        stats = ray.get(collector._workers[0].engine_stats.remote())
        per_push = len(list(state_buckets(base, int(0.01 * 2**20))))
        assert stats["version"] == 2 and stats["pushes"] == 2
        assert per_push > 10 and stats["buckets"] == 2 * per_push
        # the critic's fresh samples (archer.fresh_samples=rollout) go through the engine too
        observations = [t.turns[0].observation for t in second]
        gen = collector.sample(observations, list(range(len(observations))), 2)
        policy = Policy.from_pretrained(policy_dir, max_context_tokens=256,
                                        reserve=cfg.generation.max_new_tokens)
        policy.model.load_state_dict(new)
        own = policy.generate(observations, Sampling.from_config(cfg.generation),
                              seeds=list(range(len(observations))))
        assert gen.action_ids == own.action_ids and gen.texts == own.texts
    finally:
        collector.close()


@ray.remote
class _Sampler:
    """A stand-in rollout worker: ids = [seed], text = observation + seed; or it refuses (a
    worker holding another version)."""

    def __init__(self, refuse):
        self.refuse = refuse

    def sample(self, observations, seeds, version):
        from archer.models.policy import Generation

        if self.refuse:
            raise ValueError(f"this worker does not hold version {version}")
        return Generation([f"{o}:{s}" for o, s in zip(observations, seeds, strict=True)],
                          [[s] for s in seeds], [[-1.0] for _ in seeds]), len(seeds)


def test_a_rank_samples_the_rows_a_worker_refuses_itself():
    """WorkerSampler (a learner rank's view of the workers): rows come back in order, the
    workers' tokens are counted, and the part a worker refuses goes to the fallback."""
    from archer.distributed.rollout import WorkerSampler
    from archer.metrics import COUNTS
    from archer.models.policy import Generation

    asked = []

    def fallback(observations, seeds):
        asked.append(list(seeds))
        return Generation([f"{o}:{s}!" for o, s in zip(observations, seeds, strict=True)],
                          [[s] for s in seeds], [[-2.0] for _ in seeds])

    obs, seeds = [f"o{i}" for i in range(7)], list(range(100, 107))
    before = COUNTS["generated_tokens"]
    sampler = WorkerSampler([_Sampler.remote(False), _Sampler.remote(True)], fallback)
    gen = sampler(obs, seeds, 3)
    # even_parts(7, 2): rows 0-2 to the first worker, 3-6 to the second (which refuses)
    assert gen.texts == [f"o{i}:{100 + i}" for i in range(3)] + [
        f"o{i}:{100 + i}!" for i in range(3, 7)]
    assert gen.action_ids == [[s] for s in seeds] and asked == [[103, 104, 105, 106]]
    assert sampler.fell_back == 4 and COUNTS["generated_tokens"] - before == 3
