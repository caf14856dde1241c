"""Twenty Questions (as in LMRL-Gym / ArCHer): guess the secret word with yes/no questions.

Observation: the question/answer history, one turn a line, after the header "Questions:\\n".
Reward: -1 per question, 0 for the question that names the secret (any alias), which ends the
episode as a success. At most `max_turns` (20) questions: then the game is lost, which is part
of the task, so `terminated=True` (no bootstrap). A question naming another known word is a
wrong guess and is answered "No." whatever the oracle would say.
"""

from __future__ import annotations

from typing import Any

from archer_envs.agents import InfoGainAgent, RandomQuestionAgent
from archer_envs.core import TextEnv
from archer_envs.text_utils import PhraseIndex, parse_history
from archer_envs.twenty_questions.knowledge import KnowledgeBase, load_knowledge
from archer_envs.twenty_questions.oracles import NO, YES, KnowledgeBaseOracle, Oracle, make_oracle

HEADER = "Questions:\n"


def guess_question(word: str) -> str:
    """The canonical guess for a word: "Is it a dog?", "Is it an apple?", "Is it scissors?"."""
    if word.endswith("s") and not word.endswith("ss"):
        return f"Is it {word}?"
    article = "an" if word[0] in "aeiou" else "a"
    return f"Is it {article} {word}?"


class TwentyQuestionsEnv(TextEnv):
    def __init__(
        self,
        subset: bool = False,
        oracle: str | Oracle = "kb",
        knowledge_path: str | None = None,
        max_turns: int = 20,
        heldout_fraction: float | None = None,
        max_action_chars: int = 300,
        render_mode: str | None = None,
    ):
        super().__init__(
            max_turns=max_turns,
            heldout_fraction=(0.0 if subset else 0.2) if heldout_fraction is None else heldout_fraction,
            max_action_chars=max_action_chars,
            horizon_terminates=True,
            render_mode=render_mode,
        )
        self.kb: KnowledgeBase = load_knowledge(knowledge_path)
        self.subset = subset
        self.oracle = make_oracle(oracle, self.kb)
        self._kb_oracle = KnowledgeBaseOracle(self.kb)
        self.words = list(self.kb.subset) if subset else [w.word for w in self.kb.words]
        self._aliases = {w.word: w.aliases for w in self.kb.words}
        self._names = PhraseIndex(self._aliases)
        self._history = HEADER

    @property
    def split_name(self) -> str:
        return "TwentyQuestionsSubset" if self.subset else "TwentyQuestions"

    def all_task_ids(self) -> list[str]:
        return list(self.words)

    def named_word(self, question: str) -> str | None:
        """The known word (any alias) a question names, if any: the secret first."""
        named = self._names.named(question)
        if self._task_id in named:
            return self._task_id
        return min(named) if named else None

    def expected_answer(self, secret: str, question: str) -> str:
        """What the env would answer (used by the scripted agents, on a hot path)."""
        named = self._names.named(question)
        if secret in named:
            return YES
        if named:
            return NO
        return self._kb_oracle(secret, question) if question else NO

    def _begin(self, task_id: str) -> str:
        self._history = HEADER
        return self._history

    def _turn(self, action: str) -> tuple[str, float, bool, dict[str, Any]]:
        assert self._task_id is not None
        named = self.named_word(action) if action else None
        if not action:
            shown, answer = "(no question)", NO
        elif named == self._task_id:
            shown, answer = action, YES
        elif named is not None:
            shown, answer = action, NO
        else:
            shown, answer = action, self.oracle(self._task_id, action)
        self._history += f"{shown} {answer}\n"
        solved = named == self._task_id
        return self._history, (0.0 if solved else -1.0), solved, {"answer": answer}

    # ----------------------------------------------------------------- scripted agents
    def make_agent(self, name: str, seed: int = 0, noise: float = 0.0) -> Any:
        questions = [a.question for a in self.kb.attributes]
        if name == "info_gain":
            return InfoGainAgent(
                candidates=self.words,
                questions=questions,
                expected_answer=self.expected_answer,
                guess=guess_question,
                parse=lambda obs: parse_history(obs, HEADER),
                noise=noise,
                seed=seed,
                noise_questions=questions + [p for a in self.kb.attributes for p in a.paraphrases],
            )
        if name == "random":
            return RandomQuestionAgent(questions + [guess_question(w) for w in self.words], seed)
        raise ValueError(f"unknown scripted agent {name!r} for Twenty Questions: info_gain, random")

    def corpus(self) -> list[str]:
        """Text this env can produce or expect: used to train a tokenizer offline."""
        lines = [HEADER, YES, NO, "(no question)"]
        for a in self.kb.attributes:
            lines += [a.question, *a.paraphrases]
        lines += [guess_question(w.word) for w in self.kb.words]
        return lines
