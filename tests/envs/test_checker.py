import pytest

import archer_envs
from archer_envs.checker import check_text_env


@pytest.mark.parametrize("env_id", archer_envs.ENV_IDS)
def test_every_registered_env_passes_the_checker(env_id):
    report = check_text_env(env_id, episodes=4)
    assert report.ok, report.format()


def test_user_env_passes_and_a_bad_one_fails():
    import gymnasium as gym

    assert check_text_env("user_envs:GuessNumber-v0").ok
    report = check_text_env("user_envs:BrokenGuessNumber-v0")
    assert not report.ok
    assert any(name == "episodes" and not ok and "simulated env bug" in msg
               for name, ok, msg in report.results)
    assert not check_text_env("archer/NoSuchEnv-v0").ok
    assert gym.spec("archer/TwentyQuestions-v0").max_episode_steps is None
