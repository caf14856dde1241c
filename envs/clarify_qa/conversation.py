"""The ClarifyQA conversation: the utterance grammar and the observation text.

Grammar of an agent utterance (after the base env's cleaning: one line, at most
`max_action_chars`):

1. it starts with "Answer:" (any case): an answer, the text after the colon;
2. else it starts with "Question:" (any case), or ends with "?": a clarifying question (the
   text after "Question:", or the whole utterance);
3. else, if not empty: an answer, the whole utterance;
4. empty: nothing was said (an invalid action).

Observation: `HEADER`, then one line a turn, the user's request first:

    User: How long does it take to cook rice?
    Agent: Question: Which kind of rice do you mean: white rice, brown rice or wild rice?
    User: I mean brown rice.
    Agent: Answer: 45 minutes
"""

from __future__ import annotations

from dataclasses import dataclass, field

HEADER = (
    'Help the user. You may ask one clarifying question ("Question: ...") before you answer '
    '("Answer: ...").\n'
)
USER, AGENT = "User: ", "Agent: "
QUESTION, ANSWER = "Question:", "Answer:"
NOTHING = "(nothing)"


def classify(utterance: str) -> tuple[str, str]:
    """("question" | "answer" | "empty", the question's or answer's text)."""
    text = utterance.strip()
    if not text:
        return "empty", ""
    lower = text.lower()
    if lower.startswith(ANSWER.lower()):
        return "answer", text[len(ANSWER) :].strip()
    if lower.startswith(QUESTION.lower()):
        return "question", text[len(QUESTION) :].strip()
    if text.endswith("?"):
        return "question", text
    return "answer", text


@dataclass
class Conversation:
    request: str = ""
    turns: list[tuple[str, str]] = field(default_factory=list)
    """(speaker, text) after the request: speaker "agent" or "user"."""

    @property
    def asked(self) -> bool:
        """Whether the agent has asked a clarifying question."""
        return any(s == "agent" and classify(t)[0] == "question" for s, t in self.turns)

    @property
    def last_reply(self) -> str:
        """The user's reply after the agent's first question, or ""."""
        for i, (speaker, text) in enumerate(self.turns):
            if speaker == "agent" and classify(text)[0] == "question":
                after = self.turns[i + 1 : i + 2]
                return after[0][1] if after and after[0][0] == "user" else ""
        return ""


def parse_observation(observation: str) -> Conversation:
    """Read an observation back into the request and the turns after it."""
    body = observation[len(HEADER) :] if observation.startswith(HEADER) else observation
    conv = Conversation()
    for line in body.splitlines():
        if line.startswith(USER) and not conv.request and not conv.turns:
            conv.request = line[len(USER) :]
        elif line.startswith(USER):
            conv.turns.append(("user", line[len(USER) :]))
        elif line.startswith(AGENT):
            conv.turns.append(("agent", line[len(AGENT) :]))
    return conv
