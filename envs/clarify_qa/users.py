"""Simulated users for ClarifyQA: `user(request, intent, question) -> reply`.

A user is any callable taking the `Request`, the hidden intent (one of its `Reading`s) and the
agent's clarifying question (the text after "Question:"), and returning one reply. Three ship
here, picked by `make_user(spec)`:

- `RuleBasedUser` ("rule", the default): if the question is about the request's dimension (it
  names one of the request's keywords, a reading's phrase, or asks generically for
  clarification: "what do you mean", "clarify", ...), the reply reveals the intent: "I mean
  brown rice."; any other question gets `OFF_TOPIC_REPLY`, which reveals nothing.
- `HFModelUser` ("hf:<local model dir>"): a local Hugging Face model (seq2seq or causal)
  prompted with the request, the intent and the question; greedy decoding.
- `EndpointUser` ("endpoint:<model>" with `base_url`): an OpenAI-compatible chat-completions
  endpoint; the API key is read from the environment variable `ARCHER_CLARIFY_API_KEY` only
  (never from a config value or a kwarg).

The model users are built only when selected, and say what is missing (transformers, the model
directory, the API key) when they cannot be.
"""

from __future__ import annotations

import importlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from archer_envs.clarify_qa.data import Reading, Request
from archer_envs.text_utils import mentions

User = Callable[[Request, Reading, str], str]
API_KEY_ENV = "ARCHER_CLARIFY_API_KEY"
OFF_TOPIC_REPLY = "I don't see what that has to do with my question."
GENERIC_CUES = (
    "what do you mean",
    "what did you mean",
    "clarify",
    "clarification",
    "specify",
    "specific",
    "more precise",
    "more details",
    "which one",
    "be precise",
)
MAX_REPLY_CHARS = 300
PROMPT = (
    'You are a user who asked an assistant: "{request}"\n'
    "What you actually mean: {intent}.\n"
    'The assistant asks you: "{question}"\n'
    "Reply in one short sentence that says what you mean. Do not answer your own question.\n"
    "Reply:"
)


def intent_reply(intent: Reading) -> str:
    """The rule-based user's reply that reveals `intent`."""
    return f"I mean {intent.phrase}" + ("" if intent.phrase.endswith(".") else ".")


def is_about(request: Request, question: str) -> bool:
    """Whether a clarifying question is about the request's dimension (rule-based user)."""
    cues = (*request.keywords, *(r.phrase for r in request.readings), *GENERIC_CUES)
    return mentions(question, cues)


def clean_reply(text: str, fallback: str = OFF_TOPIC_REPLY) -> str:
    """One line of at most `MAX_REPLY_CHARS` characters (the first non-empty line)."""
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line[:MAX_REPLY_CHARS]
    return fallback


class RuleBasedUser:
    def __call__(self, request: Request, intent: Reading, question: str) -> str:
        return intent_reply(intent) if is_about(request, question) else OFF_TOPIC_REPLY


class HFModelUser:
    """A local Hugging Face model as the user (greedy, at most `max_new_tokens` tokens)."""

    def __init__(
        self,
        path: str | Path,
        prompt: str = PROMPT,
        device: str = "cpu",
        max_new_tokens: int = 32,
    ):
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"user model directory not found: {path} (user='hf:<dir>')")
        try:
            from transformers import (
                AutoConfig,
                AutoModelForCausalLM,
                AutoModelForSeq2SeqLM,
                AutoTokenizer,
            )
        except ImportError as err:  # pragma: no cover - transformers is a core dependency
            raise ImportError("the hf: user needs the package transformers") from err
        config = AutoConfig.from_pretrained(str(path))
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        cls = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.model = cls.from_pretrained(str(path)).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.prompt, self.device, self.max_new_tokens = prompt, device, max_new_tokens

    def __call__(self, request: Request, intent: Reading, question: str) -> str:
        import torch

        prompt = self.prompt.format(request=request.text, intent=intent.phrase, question=question)
        inputs = self.tokenizer(prompt, return_tensors="pt").to(self.device)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False, pad_token_id=pad
            )
        new = out[0] if self.seq2seq else out[0, inputs["input_ids"].shape[1] :]
        return clean_reply(self.tokenizer.decode(new, skip_special_tokens=True))


class EndpointUser:
    """An OpenAI-compatible chat-completions endpoint as the user (temperature 0).

    The API key comes from the environment variable `ARCHER_CLARIFY_API_KEY` only; for a local
    server without authentication set it to any value.
    """

    def __init__(self, base_url: str, model: str, prompt: str = PROMPT, timeout: float = 30.0):
        if not base_url or not model:
            raise ValueError(
                "the endpoint user needs a model and a base URL: "
                "user='endpoint:<model>', user_base_url='http://host:port/v1'"
            )
        key = os.environ.get(API_KEY_ENV)
        if not key:
            raise RuntimeError(
                f"the endpoint user reads its API key from the environment variable "
                f"{API_KEY_ENV}, which is not set (for a server without authentication, "
                f"set it to any value)"
            )
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.prompt, self.timeout = model, prompt, timeout
        self._key = key

    def __repr__(self) -> str:  # never show the key
        return f"EndpointUser(url={self.url!r}, model={self.model!r})"

    def __call__(self, request: Request, intent: Reading, question: str) -> str:
        prompt = self.prompt.format(request=request.text, intent=intent.phrase, question=question)
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": 64,
        }
        req = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
            text = payload["choices"][0]["message"]["content"]
        except (urllib.error.URLError, KeyError, IndexError, TypeError, ValueError) as err:
            raise RuntimeError(f"the user endpoint {self.url} failed: {err!r}") from err
        return clean_reply(str(text))


def make_user(spec: str | User = "rule", base_url: str | None = None) -> User:
    """Build a user from a spec: "rule", "hf:<local model dir>", "endpoint:<model>" (with
    `base_url`), "module:attr" (a callable, or a class called with no arguments), or a
    callable itself."""
    if callable(spec):
        return spec
    if spec == "rule":
        return RuleBasedUser()
    if spec.startswith("hf:"):
        return HFModelUser(spec[3:])
    if spec.startswith("endpoint:"):
        return EndpointUser(base_url or "", spec[len("endpoint:") :])
    if ":" in spec:
        module, _, attr = spec.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        return obj() if isinstance(obj, type) else obj
    raise ValueError(
        f"unknown user {spec!r}: use 'rule', 'hf:<model dir>', 'endpoint:<model>' "
        f"(with user_base_url) or 'module:callable'"
    )
