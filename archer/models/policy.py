"""The policy: any local Hugging Face causal LM + tokenizer, acting in text envs.

A prompt is the observation text; an utterance is the tokens generated after it, ended by the
end-of-sequence token (and, by default, a newline). Prompt and utterance are tokenised
separately and concatenated, at generation and at training alike, so the tokens a policy is
trained on are exactly the tokens it produces. Histories longer than the context window keep
their first line (the task prompt) and their latest turns.
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
        self.model = model.to(device).eval()  # acting and RL scoring run without dropout
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

    def prompt_ids(self, observation: str, reserve: int) -> list[int]:
        """The observation's tokens, cut to leave room for `reserve` more in the context.

        The first line of an observation is the task prompt (Twenty Questions' header, the
        WebShop instruction); it is encoded on its own and always kept, and an over-long
        history loses its oldest turns after it. Generation and training use this one
        function, so a policy is trained on exactly the prompts it acts from.
        """
        head, newline, tail = observation.partition("\n")
        head_ids = self.encode_prompt(head + newline)
        tail_ids = self.encode_prompt(tail) if tail else []
        room = max(1, self.max_context_tokens - reserve)
        if len(head_ids) + len(tail_ids) <= room:
            return head_ids + tail_ids
        if len(head_ids) >= room:
            return (head_ids + tail_ids)[-room:]
        return head_ids + tail_ids[len(tail_ids) - (room - len(head_ids)) :]

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
        seeds: list[int] | None = None,
        return_logprobs: bool = False,
    ) -> list[str] | tuple[list[str], list[list[float]]]:
        """One utterance per observation; temperature 0 is greedy decoding.

        `seeds` gives every row its own sampling stream, so an episode's utterances do not
        depend on which other episodes share its batch (or its rollout worker). Otherwise rows
        draw from `generator`. With `return_logprobs`, also returns the log-probability of each
        kept token under the sampling distribution (after temperature and top-p).
        """
        if not observations:
            return ([], []) if return_logprobs else []
        if seeds is not None and len(seeds) != len(observations):
            raise ValueError(f"got {len(seeds)} seeds for {len(observations)} observations")
        self.model.eval()
        prompts = [self.prompt_ids(o, max_new_tokens) for o in observations]
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
        row_generators = (
            [torch.Generator().manual_seed(int(s)) for s in seeds] if seeds is not None else None
        )

        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        past, logits = out.past_key_values, out.logits[:, -1]  # [B, V]
        next_pos = positions[:, -1:] + 1  # [B, 1]
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        generated: list[list[int]] = [[] for _ in range(batch)]
        logprobs: list[list[float]] = [[] for _ in range(batch)]
        for _ in range(max_new_tokens):
            token, token_logp = self._choose(logits, temperature, top_p, generator, row_generators)
            is_stop = torch.isin(token, stop_ids)
            for row in torch.nonzero(~finished & ~is_stop).flatten().tolist():
                generated[row].append(int(token[row]))
                logprobs[row].append(float(token_logp[row]))
            finished |= is_stop
            if bool(finished.all()):
                break
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype, device=self.device)], 1)
            out = self.model(input_ids=token[:, None], attention_mask=mask, position_ids=next_pos,
                             past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[:, -1]
            next_pos = next_pos + 1
        texts = [self.tokenizer.decode(g, skip_special_tokens=True).strip() for g in generated]
        return (texts, logprobs) if return_logprobs else texts

    @staticmethod
    def _choose(logits: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None,
                row_generators: list[torch.Generator] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token per row ([B]) and its log-probability under the sampling distribution."""
        logits = logits.float()
        if temperature == 0:
            token = logits.argmax(-1)
            return token, torch.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1)
        probs = torch.softmax(logits / temperature, dim=-1)  # [B, V]
        if top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p  # always keeps the top token
            sorted_p = sorted_p * keep
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
            probs = probs / probs.sum(-1, keepdim=True)
        if row_generators is not None:
            cpu_probs = probs.cpu()
            token = torch.stack([
                torch.multinomial(cpu_probs[r], 1, generator=g).squeeze(-1)
                for r, g in enumerate(row_generators)
            ]).to(probs.device)
        else:
            gen = generator if generator is not None and generator.device == probs.device else None
            token = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        return token, probs.gather(-1, token[:, None]).clamp_min(1e-30).log().squeeze(-1)

    # ------------------------------------------------------------------ log-probs
    def action_logprobs(
        self, observations: list[str], actions: list[str], grad: bool = False,
        model: torch.nn.Module | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token log π(a|s) of each utterance (and its end-of-utterance token).

        Returns (logp [B, L], mask [B, L]) with L the longest utterance in tokens; row i's
        first mask[i].sum() entries are its tokens in order, exactly equal (to float tolerance)
        to scoring that (observation, action) pair alone without padding. Sequences are right
        padded, so positions need no correction. `model` scores with another module of the
        same vocabulary (a DeepSpeed engine, a frozen reference); default: this policy's.
        """
        if len(observations) != len(actions):
            raise ValueError(f"{len(observations)} observations but {len(actions)} actions")
        model = model if model is not None else self.model
        pairs = []
        for obs, act in zip(observations, actions, strict=False):
            a = self.encode_action(act)[: self.max_context_tokens - 1]
            pairs.append((self.prompt_ids(obs, len(a)), a))
        width = max(len(p) + len(a) for p, a in pairs)
        longest = max(len(a) for _, a in pairs)
        ids = torch.full((len(pairs), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros_like(ids)
        for row, (p, a) in enumerate(pairs):
            ids[row, : len(p) + len(a)] = torch.tensor(p + a)
            attention[row, : len(p) + len(a)] = 1
        ids, attention = ids.to(self.device), attention.to(self.device)
        with torch.set_grad_enabled(grad):
            logits = model(input_ids=ids, attention_mask=attention).logits  # [B, T, V]
            # Gather only the action positions: token j of row i's action sits at
            # len(p_i) + j and is predicted by the logits at len(p_i) + j - 1.
            index = torch.zeros((len(pairs), longest), dtype=torch.long)
            mask = torch.zeros((len(pairs), longest), dtype=torch.float32)
            for row, (p, a) in enumerate(pairs):
                index[row, : len(a)] = torch.arange(len(p) - 1, len(p) + len(a) - 1)
                mask[row, : len(a)] = 1.0
            index, mask = index.to(self.device), mask.to(self.device)
            picked = logits.gather(1, index[:, :, None].expand(-1, -1, logits.shape[-1]))  # [B, L, V]
            logp = torch.log_softmax(picked.float(), dim=-1)  # [B, L, V]
            targets = ids.gather(1, (index + 1) * mask.long())  # [B, L]
            token_logp = logp.gather(-1, targets[:, :, None]).squeeze(-1) * mask  # [B, L]
        return token_logp, mask
