import gymnasium as gym
import pytest

import archer_envs  # noqa: F401
import user_envs  # noqa: F401
from archer_envs.core import CHARSET, clean_action, split_task_ids


def test_clean_action_flags():
    assert clean_action("  Is it\n a dog? ", 100) == ("Is it a dog?", {"invalid_action": False, "action_truncated": False})
    text, flags = clean_action("", 100)
    assert text == "" and flags["invalid_action"]
    text, flags = clean_action("x" * 500, 10)
    assert text == "x" * 10 and flags["action_truncated"]
    with pytest.raises(TypeError, match="str action"):
        clean_action(None, 10)


def test_split_is_deterministic_disjoint_and_covering():
    ids = [f"t{i}" for i in range(50)]
    a = split_task_ids("Env", ids, 0.2)
    b = split_task_ids("Env", list(reversed(ids)), 0.2)
    assert set(a["eval"]) == set(b["eval"]) and len(a["eval"]) == 10
    assert not set(a["train"]) & set(a["eval"])
    assert set(a["train"]) | set(a["eval"]) == set(ids)
    # A different env name gives a different (but still deterministic) split.
    assert set(split_task_ids("Other", ids, 0.2)["eval"]) != set(a["eval"])
    none = split_task_ids("Env", ids, 0.0)
    assert none["eval"] == none["train"] == ids
    with pytest.raises(ValueError):
        split_task_ids("Env", ids, 1.0)


def test_user_env_by_module_id_and_contract():
    env = gym.make("user_envs:GuessNumber-v0")
    assert set(CHARSET) >= set(" ?.\n")
    obs, info = env.reset(seed=1, options={"task_id": "5"})
    assert obs == "Find the number.\n" and info["task_id"] == "5"
    obs, r, term, trunc, info = env.step("Is it more than 4?")
    assert (r, term, trunc) == (-1.0, False, False) and obs.endswith("Yes.\n")
    obs, r, term, trunc, info = env.step("Is it 5?")
    assert (r, term, trunc, info["success"]) == (0.0, True, False, True)
    with pytest.raises(RuntimeError, match="reset"):
        env.step("again?")


def test_turn_limit_terminates_or_truncates():
    env = gym.make("user_envs:GuessNumber-v0", max_turns=2).unwrapped
    env.reset(options={"task_id": "3"})
    env.step("Is it 1?")
    *_, term, trunc, info = env.step("Is it 2?")
    assert term and not trunc and info["success"] is False  # losing at the limit is the task's rule
    env.horizon_terminates = False
    env.reset(options={"task_id": "3"})
    env.step("Is it 1?")
    *_, term, trunc, info = env.step("Is it 2?")
    assert trunc and not term and info["success"] is False


def test_reset_samples_from_split_with_seed():
    env = gym.make("user_envs:GuessNumber-v0").unwrapped
    seen = {env.reset(seed=s)[1]["task_id"] for s in range(40)}
    assert seen <= set(env.task_ids("train")) and len(seen) > 1
    held = {env.reset(seed=s, options={"split": "eval"})[1]["task_id"] for s in range(40)}
    assert held <= set(env.task_ids("eval"))
    assert env.reset(seed=7)[1] == env.reset(seed=7)[1]
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "99"})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"taskid": "1"})


def test_malformed_utterances_count_a_turn_and_never_raise():
    env = gym.make("user_envs:GuessNumber-v0")
    env.reset(seed=0)
    _, r, *_, info = env.step("")
    assert r == -1.0 and info["invalid_action"]
    _, r, *_, info = env.step("y" * 10_000)
    assert r == -1.0 and info["action_truncated"]
