"""archer_envs: multi-turn text environments, registered with Gymnasium on import.

Every env here is a plain `gymnasium.Env` with str observations and actions; archer itself
accepts any Gymnasium id, including a user's own env as "my_module:MyEnv-v0".
"""

import gymnasium as gym

from archer_envs.core import TextEnv

ENV_IDS = (
    "archer/TwentyQuestions-v0",
    "archer/TwentyQuestionsSubset-v0",
    "archer/GuessMyCity-v0",
    "archer/WebShop-v0",
    "archer/EarlyChoice-v0",
    "archer/ClarifyQA-v0",
    "archer/ClarifyQASubset-v0",
)


def _register() -> None:
    specs = {
        "archer/TwentyQuestions-v0": ("archer_envs.twenty_questions:TwentyQuestionsEnv", {}),
        "archer/TwentyQuestionsSubset-v0": (
            "archer_envs.twenty_questions:TwentyQuestionsEnv",
            {"subset": True},
        ),
        "archer/GuessMyCity-v0": ("archer_envs.guess_my_city:GuessMyCityEnv", {}),
        "archer/WebShop-v0": ("archer_envs.webshop:WebShopEnv", {}),
        "archer/EarlyChoice-v0": ("archer_envs.diagnostics:EarlyChoiceEnv", {}),
        "archer/ClarifyQA-v0": ("archer_envs.clarify_qa:ClarifyQAEnv", {}),
        # Small enough for a tiny model to learn from logged data: no held-out requests,
        # as the Twenty Questions subset has no held-out words.
        "archer/ClarifyQASubset-v0": (
            "archer_envs.clarify_qa:ClarifyQAEnv",
            {"domains": ["cooking", "sports"], "heldout_fraction": 0.0},
        ),
    }
    for env_id, (entry_point, kwargs) in specs.items():
        if env_id not in gym.registry:
            # No max_episode_steps: each env enforces its own turn limit, and marks losing at
            # the limit as `terminated` because the limit is a rule of the game.
            gym.register(id=env_id, entry_point=entry_point, kwargs=kwargs)


_register()

__all__ = ["ENV_IDS", "TextEnv"]
