"""The policy: any local Hugging Face causal LM + tokenizer, acting in text envs.

A prompt is the observation text; an utterance is the tokens generated after it, ended by the
end-of-sequence token (and, by default, a newline). Prompt and utterance are tokenised
separately and concatenated, at generation and at training alike, so the tokens a policy is
trained on are exactly the tokens it produces. Histories longer than the context window keep
their last tokens.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from archer.errors import PolicyLoadError

__all__ = ["Policy", "PolicyLoadError"]


class Policy:
    def __init__(self, model: PreTrainedModel, tokenizer, device: str = "cpu",
                 max_context_tokens: int = 512):
        if tokenizer.eos_token_id is None:
            raise ValueError("the policy tokenizer needs an eos token to end utterances")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model.to(device)
        self.tokenizer = tokenizer
        self.device = device
        limit = getattr(model.config, "n_positions", None) or getattr(
            model.config, "max_position_embeddings", max_context_tokens
        )
        self.max_context_tokens = min(max_context_tokens, limit)
        self._newline_ids = torch.tensor(
            [i for t, i in tokenizer.get_vocab().items() if "\n" in tokenizer.convert_tokens_to_string([t])],
            dtype=torch.long,
        )

    # --------------------------------------------------------------------------- io
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu",
                        max_context_tokens: int = 512) -> Policy:
        path = Path(path)
        if not (path / "config.json").is_file():
            raise PolicyLoadError(
                f"no Hugging Face checkpoint at {path} (expected config.json and weights); "
                "train one with `archer sft` or pass a local model directory"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path))
        return cls(model, tokenizer, device=device, max_context_tokens=max_context_tokens)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    # ----------------------------------------------------------------------- tokens
    def encode_prompt(self, observation: str) -> list[int]:
        return self.tokenizer(observation, add_special_tokens=False)["input_ids"]

    def encode_action(self, action: str) -> list[int]:
        """Utterance tokens followed by eos (the end-of-utterance marker)."""
        return self.tokenizer(action, add_special_tokens=False)["input_ids"] + [
            self.tokenizer.eos_token_id
        ]

    def fit_prompt(self, prompt_ids: list[int], reserve: int) -> list[int]:
        """Keep the last tokens of a prompt so that `reserve` more tokens fit the context."""
        room = max(1, self.max_context_tokens - reserve)
        return prompt_ids[-room:]

    # ------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        observations: list[str],
        max_new_tokens: int = 32,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_on_newline: bool = True,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """One utterance per observation. temperature 0 is greedy decoding."""
        if not observations:
            return []
        self.model.eval()
        prompts = [self.fit_prompt(self.encode_prompt(o), max_new_tokens) for o in observations]
        batch, width = len(prompts), max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((batch, width), pad, dtype=torch.long)
        mask = torch.zeros((batch, width), dtype=torch.long)
        for row, p in enumerate(prompts):  # left padding
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
        stop_ids = torch.tensor([self.tokenizer.eos_token_id], device=self.device)
        if stop_on_newline and len(self._newline_ids):
            stop_ids = torch.cat([stop_ids, self._newline_ids.to(self.device)])

        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]  # [B, V]
        next_pos = positions[:, -1:] + 1  # [B, 1]
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        generated: list[list[int]] = [[] for _ in range(batch)]
        for _ in range(max_new_tokens):
            token = self._choose(logits, temperature, top_p, generator)  # [B]
            is_stop = torch.isin(token, stop_ids)
            for row in torch.nonzero(~finished & ~is_stop).flatten().tolist():
                generated[row].append(int(token[row]))
            finished |= is_stop
            if bool(finished.all()):
                break
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=self.device)], 1)
            out = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                             past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
            next_pos = next_pos + 1
        return [self.tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated]

    @staticmethod
    def _choose(logits: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None) -> torch.Tensor:
        logits = logits.float()
        if temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / temperature, dim=-1)  # [B, V]
        if top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p  # always keeps the top token
            sorted_p = sorted_p * keep
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
        sample_gen = generator if generator is not None and generator.device == probs.device else None
        return torch.multinomial(probs, 1, generator=sample_gen).squeeze(-1)
