import archer_envs
import pytest
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


def test_a_gymnasium_only_env_passes_with_notes():
    report = check_text_env("examples.guess_number:GuessMyNumber-v0")
    assert report.ok, report.format()
    assert any(n.startswith("no task_ids(split)") for n in report.notes)
    assert "notes (" in report.format() and "FAIL" not in report.format()


def test_gymnasium_warnings_that_break_the_contract_fail():
    from archer_envs.checker import classify_gymnasium_warnings

    broken, advice = classify_gymnasium_warnings([
        "WARN: The obs returned by the `step()` method is not within the observation space.",
        "WARN: Expects `terminated` signal to be a boolean, actual type: <class 'int'>",
        "WARN: Not able to test alternative render modes due to the environment not having a spec.",
        "WARN: Not able to test alternative render modes due to the environment not having a spec.",
    ])
    assert len(broken) == 2 and advice == [
        "Not able to test alternative render modes due to the environment not having a spec."]
