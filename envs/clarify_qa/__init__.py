"""ClarifyQA: short question-answering conversations where the agent may ask one clarifying
question before it answers (the setting of Refit/Swift, arXiv 2506.06964)."""

from archer_envs.clarify_qa.agents import RandomAgent, ScriptedAgent, clarifying_question
from archer_envs.clarify_qa.conversation import classify, parse_observation
from archer_envs.clarify_qa.data import Reading, Request, load_requests
from archer_envs.clarify_qa.env import ClarifyQAEnv
from archer_envs.clarify_qa.reward import correctness, normalize_answer, token_f1
from archer_envs.clarify_qa.users import EndpointUser, HFModelUser, RuleBasedUser, make_user

__all__ = [
    "ClarifyQAEnv",
    "EndpointUser",
    "HFModelUser",
    "RandomAgent",
    "Reading",
    "Request",
    "RuleBasedUser",
    "ScriptedAgent",
    "clarifying_question",
    "classify",
    "correctness",
    "load_requests",
    "make_user",
    "normalize_answer",
    "parse_observation",
    "token_f1",
]
