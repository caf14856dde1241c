"""Twenty Questions: the secret-word guessing game of LMRL-Gym and the ArCHer paper."""

from archer_envs.twenty_questions.env import TwentyQuestionsEnv, guess_question
from archer_envs.twenty_questions.knowledge import load_knowledge
from archer_envs.twenty_questions.oracles import (
    EmbeddingOracle,
    HFModelOracle,
    KnowledgeBaseOracle,
    make_oracle,
)

__all__ = [
    "EmbeddingOracle",
    "HFModelOracle",
    "KnowledgeBaseOracle",
    "TwentyQuestionsEnv",
    "guess_question",
    "load_knowledge",
    "make_oracle",
]
