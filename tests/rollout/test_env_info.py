"""env_info: one place where archer reads an env's optional methods."""

import archer_envs
import pytest
import user_envs  # noqa: F401  (registers GuessNumber-v0, SayYes-v0)

from archer.rollout.envs import NO_HELDOUT_NOTE, NO_TASKS_NOTE, EnvError, env_info, make_env


@pytest.mark.parametrize("env_id", [*archer_envs.ENV_IDS, "user_envs:GuessNumber-v0"])
def test_every_task_env(env_id):
    info = env_info(env_id)
    base = make_env(env_id).unwrapped
    assert info.env_id == env_id and info.has_task_ids
    assert info.tasks("train") == base.task_ids("train") == info.train_tasks
    assert info.tasks("eval") == base.task_ids("eval") and info.tasks("all") == base.task_ids("all")
    assert info.has_heldout == base.has_heldout
    assert info.has_agents  # every one of them has a "random" agent
    assert info.corpus == list(base.corpus())
    assert info.atomic_terms == list(base.atomic_terms())
    assert all(n.startswith("no ") for n in info.notes)


def test_notes_name_what_is_missing():
    assert env_info("archer/WebShop-v0").notes == []
    assert env_info("archer/TwentyQuestions-v0").notes == [
        "no atomic_terms(): no strings are kept whole by a new tokenizer"]
    assert env_info("archer/TwentyQuestionsSubset-v0").heldout_note() == NO_HELDOUT_NOTE
    # SayYes subclasses TextEnv and keeps its make_agent default: that is "not provided".
    assert not env_info("user_envs:SayYes-v0").has_agents


def test_a_plain_gymnasium_env_has_no_tasks():
    info = env_info("examples.guess_number:GuessMyNumber-v0")
    assert info.tasks("train") is None and info.tasks("eval") is None and info.tasks("all") is None
    assert not info.has_heldout and not info.has_task_ids and not info.has_agents
    assert info.corpus == [] and info.atomic_terms == []
    assert info.heldout_note() == NO_TASKS_NOTE
    missing = {n.split(":")[0] for n in info.notes}
    assert missing == {"no task_ids(split)", "no corpus()", "no atomic_terms()",
                       "no make_agent(name, seed, noise)"}
    with pytest.raises(ValueError, match="split must be one of"):
        info.tasks("test")


def test_an_empty_split_is_an_error():
    env = make_env("user_envs:GuessNumber-v0")
    env.unwrapped.task_ids = lambda split: [] if split == "eval" else ["1"]
    with pytest.raises(EnvError, match="split 'eval' of x is empty"):
        env_info("x", env=env)
