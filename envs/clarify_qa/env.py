"""ClarifyQA: answer a user's request, asking one clarifying question first when it is
ambiguous (the setting of the Refit/Swift paper, arXiv 2506.06964).

A task is a request ("How long does it take to cook rice?"); a request has one or more readings
(white, brown or wild rice), each with its gold answer and a prior weight. At reset the user's
hidden intent is drawn from the readings by those weights with the env's seeded RNG, so the
same request can be played, and logged, with different intents: the intent is part of the
episode, not of the task, and a group of episodes of one request (Swift's groups) averages over
what its users mean, as the policy, which sees only the request, must.

Turns (the grammar is in `conversation.py`): the agent either asks one clarifying question,
which the simulated user answers from the hidden intent, or answers, which ends the episode. A
second question, and an empty utterance, are invalid (`info["invalid_action"]`): the user does
not answer them (the observation says why) and the turn counts. At `max_turns` (2: a question,
then the answer) without an answer the episode ends with reward 0 (`terminated=True`: the limit
is a rule of the task), so with the default limit a second question ends the episode.

Reward (`reward.py`): 0 for every turn but the answer; the answer gets its correctness (exact
match after normalisation, or token F1 with `match="fuzzy"`) less `question_cost` if the agent
asked, clipped at 0, so the return is in [0, 1]. `info["success"]`: the answer is an exact
match (whatever `match` and the cost).
"""

from __future__ import annotations

from typing import Any

from archer_envs.clarify_qa.agents import AGENTS, RandomAgent, ScriptedAgent, clarifying_question
from archer_envs.clarify_qa.conversation import (
    AGENT,
    ANSWER,
    HEADER,
    NOTHING,
    QUESTION,
    USER,
    classify,
)
from archer_envs.clarify_qa.data import Reading, Request, load_requests
from archer_envs.clarify_qa.reward import (
    MATCH_MODES,
    answer_reward,
    correctness,
    exact_match,
)
from archer_envs.clarify_qa.users import OFF_TOPIC_REPLY, User, clean_reply, intent_reply, make_user
from archer_envs.core import TextEnv

ALREADY_ASKED = "You already asked your question. Please answer now."
SAY_SOMETHING = "Please ask one question or give your answer."


class ClarifyQAEnv(TextEnv):
    def __init__(
        self,
        user: str | User = "rule",
        user_base_url: str | None = None,
        match: str = "exact",
        question_cost: float = 0.0,
        data_path: str | None = None,
        domains: list[str] | tuple[str, ...] | None = None,
        max_turns: int = 2,
        heldout_fraction: float = 0.2,
        max_action_chars: int = 300,
        render_mode: str | None = None,
    ):
        """user: "rule" (default), "hf:<local model dir>", "endpoint:<model>" (with
        `user_base_url`; the API key from $ARCHER_CLARIFY_API_KEY), "module:callable" or a
        callable `(request, intent, question) -> reply`. data_path: a requests file in the
        bundled format (None: the bundled one). domains: keep only the requests of these
        domains (None: all); `archer/ClarifyQASubset-v0` is cooking and sports, 58 requests,
        no held-out split."""
        super().__init__(
            max_turns=max_turns,
            heldout_fraction=heldout_fraction,
            max_action_chars=max_action_chars,
            horizon_terminates=True,
            render_mode=render_mode,
        )
        if match not in MATCH_MODES:
            raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
        if not 0.0 <= question_cost <= 1.0:
            raise ValueError(f"question_cost must be in [0, 1], got {question_cost}")
        self.requests = load_requests(data_path)
        if domains is not None:
            known = sorted({r.domain for r in self.requests})
            unknown = sorted(set(domains) - set(known))
            if unknown:
                raise ValueError(f"unknown ClarifyQA domain(s) {unknown}; known: {known}")
            self.requests = [r for r in self.requests if r.domain in set(domains)]
        self.by_id = {r.id: r for r in self.requests}
        self.match = match
        self.question_cost = float(question_cost)
        self.user = make_user(user, base_url=user_base_url)
        self._request: Request | None = None
        self._intent: Reading | None = None
        self._asked = False
        self._history = HEADER

    @property
    def split_name(self) -> str:
        return "ClarifyQA"

    def all_task_ids(self) -> list[str]:
        return [r.id for r in self.requests]

    @property
    def request(self) -> Request | None:
        return self._request

    @property
    def intent(self) -> Reading | None:
        """The hidden intent of the current episode (for tests and analysis; not observed)."""
        return self._intent

    # ------------------------------------------------------------------------ episode hooks
    def _begin(self, task_id: str) -> str:
        request = self.by_id[task_id]
        weights = [r.weight for r in request.readings]
        index = int(self.np_random.choice(len(weights), p=weights)) if len(weights) > 1 else 0
        self._request, self._intent, self._asked = request, request.readings[index], False
        self._history = f"{HEADER}{USER}{request.text}\n"
        return self._history

    def _turn(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self._request is not None and self._intent is not None
        kind, text = classify(action)
        info: dict[str, Any] = {"kind": kind, "invalid_action": False}
        if kind == "answer":
            score = correctness(text, self._intent, self.match)
            reward = answer_reward(score, self._asked, self.question_cost)
            info.update(
                correctness=score,
                success=exact_match(text, self._intent),
                asked=self._asked,
                intent=self._intent.phrase,
            )
            self._history += f"{AGENT}{action}\n"
            return self._history, reward, True, info
        if kind == "question" and not self._asked:
            self._asked = True
            reply = clean_reply(self.user(self._request, self._intent, text))
            info["answer"] = reply
        else:  # an empty utterance, or a second question
            info["invalid_action"] = True
            reply = ALREADY_ASKED if kind == "question" else SAY_SOMETHING
        self._history += f"{AGENT}{action or NOTHING}\n{USER}{reply}\n"
        return self._history, 0.0, False, info

    # ----------------------------------------------------------------- scripted agents
    def make_agent(self, name: str, seed: int = 0, noise: float = 0.0) -> Any:
        """Scripted agents (see `agents.py`): "always_answer", "always_ask",
        "ask_when_ambiguous" (with `noise`), "random". They read only the observation."""
        if name == "random":
            return RandomAgent(self.requests, seed=seed)
        if name in AGENTS:
            return ScriptedAgent(self.requests, name, noise=noise, seed=seed)
        raise ValueError(f"unknown scripted agent {name!r} for ClarifyQA: {', '.join(AGENTS)}")

    def atomic_terms(self) -> list[str]:
        """The two grammar markers: with each one token, the first token a tiny policy samples
        is its decision to ask or to answer."""
        return [QUESTION, ANSWER]

    def corpus(self) -> list[str]:
        """Text this env produces or expects on the training requests (for a tokenizer)."""
        lines = [HEADER, OFF_TOPIC_REPLY, ALREADY_ASKED, SAY_SOMETHING, f"{AGENT}{NOTHING}"]
        train = set(self.task_ids("train"))
        for r in self.requests:
            if r.id not in train:
                continue
            lines += [f"{USER}{r.text}", f"{AGENT}{clarifying_question(r)}"]
            for reading in r.readings:
                lines += [f"{USER}{intent_reply(reading)}", f"{AGENT}{ANSWER} {reading.answer}"]
        return lines
