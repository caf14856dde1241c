"""Oracles for Twenty Questions: `answer(secret, question) -> "Yes." | "No."`.

Three interchangeable implementations, all plain callables so a user can inject their own:

- `KnowledgeBaseOracle`: looks the question up among the knowledge base's templated attribute
  questions and their paraphrases (exact after normalisation, then a close fuzzy match);
  questions it cannot parse get "No.", as in the reference environment.
- `EmbeddingOracle`: maps a free-form question to the nearest known question with a real
  pretrained sentence encoder (all-MiniLM-L6-v2, offline); below a cosine threshold, "No.".
- `HFModelOracle`: asks any local HF model (seq2seq such as flan-t5, or causal) and compares the
  likelihood of answering "Yes" against "No".

Guesses ("Is it a dog?") never reach an oracle: the environment decides those itself.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from archer_envs.text_utils import normalize
from archer_envs.twenty_questions.knowledge import KnowledgeBase, load_knowledge

YES, NO = "Yes.", "No."
Oracle = Callable[[str, str], str]


class KnowledgeBaseOracle:
    """Rule-based oracle over the knowledge base's questions and paraphrases."""

    def __init__(self, kb: KnowledgeBase | None = None, fuzzy_threshold: float = 0.9):
        self.kb = kb or load_knowledge()
        self.index = self.kb.question_index()
        self.fuzzy_threshold = fuzzy_threshold
        self.attribute_of = lru_cache(maxsize=65536)(self._attribute_of)
        # one matcher per known question, its side (seq2) analysed once
        self._matchers = [(difflib.SequenceMatcher(None, "", known), attr)
                          for known, attr in self.index.items()]

    def _attribute_of(self, question: str) -> str | None:
        """The attribute of the known question most similar to `question` (difflib's ratio,
        the first of equals), if that ratio reaches `fuzzy_threshold`; None otherwise.

        A known question is skipped when difflib's upper bounds on its ratio (from the two
        lengths, then from the characters in common) are below the threshold or below the
        best ratio so far: it could not be the answer, so the answer is that of the full scan,
        which is much slower for long questions (an untrained policy's 32-token babble)."""
        key = normalize(question)
        if key in self.index:
            return self.index[key]
        if self.fuzzy_threshold >= 1.0 or not key:
            return None
        best, best_ratio = None, 0.0
        for matcher, attr in self._matchers:
            matcher.set_seq1(key)
            floor = max(self.fuzzy_threshold, best_ratio)
            if matcher.real_quick_ratio() < floor or matcher.quick_ratio() < floor:
                continue  # its ratio is below both: neither the answer nor a better best
            ratio = matcher.ratio()
            if ratio > best_ratio:
                best, best_ratio = attr, ratio
        return best if best_ratio >= self.fuzzy_threshold else None

    def __call__(self, secret: str, question: str) -> str:
        attr = self.attribute_of(question)
        if attr is None:
            return NO
        return YES if self.kb.word(secret).attributes[attr] else NO


class EmbeddingOracle:
    """Nearest-known-question oracle using a pretrained sentence encoder."""

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        encoder_path: str | Path | None = None,
        threshold: float = 0.75,
        device: str = "cpu",
    ):
        from archer_envs.encoders import SentenceEncoder

        self.kb = kb or load_knowledge()
        self.threshold = threshold
        index = self.kb.question_index()
        self._known = list(index)
        self._attrs = [index[k] for k in self._known]
        self.encoder = SentenceEncoder(encoder_path, device=device)
        self._known_emb = self.encoder.encode(self._known)  # [K, H]
        self.match = lru_cache(maxsize=65536)(self._match)

    def _match(self, question: str) -> tuple[str | None, float]:
        """(attribute id or None, cosine similarity of the nearest known question)."""
        key = normalize(question)
        if not key:
            return None, 0.0
        sims = self._known_emb @ self.encoder.encode([key])[0]  # [K]
        best = int(torch.argmax(sims))
        score = float(sims[best])
        return (self._attrs[best] if score >= self.threshold else None), score

    def __call__(self, secret: str, question: str) -> str:
        attr, _ = self.match(question)
        if attr is None:
            return NO
        return YES if self.kb.word(secret).attributes[attr] else NO


class HFModelOracle:
    """Oracle backed by a local HF model: answers "Yes." when log p("Yes") > log p("No").

    Works with encoder-decoder models (flan-t5 style, the reference setup) and causal LMs.
    `prompt` is formatted with `secret` and `question`.
    """

    DEFAULT_PROMPT = (
        "The secret object is: {secret}. Answer the question about it with Yes or No.\n"
        "Question: {question}\nAnswer:"
    )

    def __init__(self, path: str | Path, prompt: str = DEFAULT_PROMPT, device: str = "cpu"):
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSeq2SeqLM,
            AutoTokenizer,
        )

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"oracle model directory not found: {path}")
        config = AutoConfig.from_pretrained(str(path))
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        cls = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.model = cls.from_pretrained(str(path)).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.prompt = prompt
        self.device = device

    @torch.no_grad()
    def answer_logprob(self, prompt: str, answer: str) -> float:
        """Sum of log-probabilities of `answer`'s tokens given `prompt`."""
        tok = self.tokenizer
        prompt_ids = tok(prompt, add_special_tokens=self.seq2seq)["input_ids"]
        answer_ids = tok((" " if not self.seq2seq else "") + answer, add_special_tokens=False)[
            "input_ids"
        ]
        if self.seq2seq:
            inputs = torch.tensor([prompt_ids], device=self.device)
            labels = torch.tensor([answer_ids], device=self.device)
            logits = self.model(input_ids=inputs, labels=labels).logits[0]  # [A, V]
        else:
            ids = torch.tensor([prompt_ids + answer_ids], device=self.device)
            logits = self.model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]  # [A, V]
        logp = torch.log_softmax(logits.float(), dim=-1)
        target = torch.tensor(answer_ids, device=logp.device)
        return float(logp.gather(-1, target[:, None]).sum())

    def __call__(self, secret: str, question: str) -> str:
        prompt = self.prompt.format(secret=secret, question=question)
        yes = self.answer_logprob(prompt, "Yes")
        no = self.answer_logprob(prompt, "No")
        return YES if yes > no else NO


def make_oracle(spec: str | Oracle, kb: KnowledgeBase | None = None) -> Oracle:
    """Build an oracle from a spec: "kb", "embedding", "hf:<local path>", "module:attr"
    (a callable, or a class/factory called with no arguments), or a callable itself."""
    if callable(spec):
        return spec
    if spec == "kb":
        return KnowledgeBaseOracle(kb)
    if spec == "embedding":
        return EmbeddingOracle(kb)
    if spec.startswith("hf:"):
        return HFModelOracle(spec[3:])
    if ":" in spec:
        module, _, attr = spec.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        return obj() if isinstance(obj, type) else obj
    raise ValueError(
        f"unknown oracle {spec!r}: use 'kb', 'embedding', 'hf:<model dir>' or 'module:callable'"
    )
