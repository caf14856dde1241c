"""The policy: any local Hugging Face causal LM + tokenizer, acting in text envs.

A prompt is the observation's tokens (`prompt_ids`): a history longer than the context keeps
its first line (the task prompt) and its latest turns, and always leaves `reserve` tokens of
room. An utterance is the ids sampled after it (`generate`), ended by a stop token (eos, or a
newline token under `Sampling.stop_on_newline`), which is kept in the ids, or cut at
`max_new_tokens`. The env receives their decoded text; the learner receives the ids themselves
and their log-probs. Scoring (`batch`, then `token_logprobs`) concatenates the same prompt ids
with those ids, so the learner scores exactly the tokens the policy sampled, under the
temperature it sampled with. Utterances that carry no ids (scripted, offline) are encoded once,
`encode(text) + eos` (`action_ids_for`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from archer.errors import PolicyLoadError
from archer.memory import release_free_memory
from archer.metrics import count

__all__ = [
    "Generation", "Guide", "Policy", "PolicyLoadError", "Sampling", "Scores", "TokenBatch",
    "acting_state_dict", "attach_head",
]


class Guide(Protocol):
    """A token-level acting rule (ILQL's value-guided decoding): at every sampling step it
    replaces the policy's next-token logits by its own, computed from them and the hidden
    state the LM head read. Sampling (temperature, top-p, greedy) then runs on its logits, and
    the stored log-probs are those of the guided distribution. It travels to rollout workers by
    pickle, so it holds what it needs (its heads), on the CPU."""

    def adjust(self, hidden: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """hidden [B, H] (the LM head's input), logits [B, V] -> the logits to sample from,
        [B, V] (-inf for a token that must not be sampled)."""
        ...


PREFILL_ROWS = 16
"""Rows per forward of the sampling loop's prefill (`Policy._prefill`); decoding runs the
whole chunk (`generation.batch_size`) together."""


def _preallocated_cache(config: Any, room: int) -> Any:
    """A KV cache for one sampling loop whose layers allocate [B, heads, prompt + room, d]
    at the prefill and write each step's keys and values in place, where transformers'
    DynamicCache concatenates the whole cache at every step (on CPU, half of generation's
    time at 512-token prompts). Attention reads the same numbers either way. None when this
    transformers lacks the layer API (before 4.56), or for a model with other than full
    attention in every layer (sliding windows, linear attention): the model then builds its
    own cache."""
    text = config.get_text_config()
    n_layers = getattr(text, "num_hidden_layers", None)
    kinds = set(getattr(text, "layer_types", None) or ["full_attention"])
    if not n_layers or getattr(text, "sliding_window", None) or kinds != {"full_attention"}:
        return None
    try:
        from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
    except ImportError:
        return None

    class Layer(DynamicLayer):
        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                b, h, t, d = key_states.shape
                self.length = 0
                self.k_buf = key_states.new_empty(b, h, t + room, d)
                self.v_buf = value_states.new_empty(b, h, t + room, d)
            end = self.length + key_states.shape[-2]
            if end > self.k_buf.shape[-2]:  # past the room: fall back to growing
                return super().update(key_states, value_states, *args, **kwargs)
            self.k_buf[:, :, self.length : end] = key_states
            self.v_buf[:, :, self.length : end] = value_states
            self.length = end
            self.keys, self.values = self.k_buf[:, :, :end], self.v_buf[:, :, :end]
            return self.keys, self.values

    class Preallocated(DynamicCache):
        def __init__(self):
            Cache.__init__(self, layers=[Layer() for _ in range(n_layers)])

        @classmethod
        def joined(cls, parts: list[Any], rows: torch.Tensor | None = None) -> Any:
            """One cache holding the rows of `parts` in order (caches prefilled from
            prompts of the same padded width), then, given `rows` [B], row `rows[b]` of
            that as its row b (a prompt shared by several rows was prefilled once). Each
            part's buffers are freed as they are copied, so the join costs one layer's keys
            and values at most."""
            whole = cls()
            for i, layer in enumerate(whole.layers):
                pieces = [part.layers[i] for part in parts]
                for name in ("k_buf", "v_buf"):
                    buf = [getattr(x, name) for x in pieces]
                    buf = torch.cat(buf) if len(buf) > 1 else buf[0]
                    setattr(layer, name, buf if rows is None else buf.index_select(0, rows))
                layer.length = pieces[0].length
                for x in pieces:
                    x.k_buf = x.v_buf = x.keys = x.values = None
                layer.lazy_initialization(layer.k_buf, layer.v_buf)
                layer.keys = layer.k_buf[:, :, : layer.length]
                layer.values = layer.v_buf[:, :, : layer.length]
            return whole

    return Preallocated()


def distinct_rows(ids: torch.Tensor,
                  mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first, inverse) for a left-padded batch whose rows repeat: `first` [U] the index of
    each distinct (ids, mask) row's first occurrence, ascending, and `inverse` [B] the
    position in `first` of each row's twin, so row b is row first[inverse[b]]. None when
    every row is distinct. (The mask counts: a row that starts with a real pad-id token is
    not its padded twin.)"""
    key = torch.cat([ids, mask.to(ids.dtype)], 1)  # [B, 2T]
    uniq, inverse = torch.unique(key, dim=0, return_inverse=True)
    n, u = key.shape[0], uniq.shape[0]
    if u == n:
        return None
    first = torch.full((u,), n, dtype=torch.long, device=ids.device).scatter_reduce(
        0, inverse, torch.arange(n, device=ids.device), "amin")  # [U], in unique()'s order
    order = first.argsort()  # the distinct rows in the batch's order
    rank = torch.empty_like(order)
    rank[order] = torch.arange(u, device=ids.device)
    return first[order], rank[inverse]


def _returned_cache(out: Any) -> Any:
    """The KV cache a forward returned: `cache` (transformers 5) or `past_key_values`."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


class TokenEngine(Protocol):
    """A generation backend a `Policy` can sample through instead of its own loop (a rollout
    worker's vLLM engine): prompt ids in, sampled ids and their log-probs out, one seed per
    row; weights in, by buckets, under a version."""

    version: int
    """The version of the weights it samples with."""

    def generate(self, prompts: list[list[int]], sampling: Sampling, seeds: list[int],
                 stop_ids: list[int]) -> tuple[list[list[int]], list[list[float]]]:
        """For each prompt: the sampled ids, ending with the stop id that ended it (one of
        `stop_ids`) unless `sampling.max_new_tokens` cut it, and log pi_T of each id
        (temperature applied; greedy: T = 1), as `Policy.generate` defines them."""
        ...

    def update_weights(self, buckets: Any, version: int) -> None:
        """Load every parameter from `buckets` (an iterable of {name: tensor} dicts that
        together hold the whole acting state dict) and sample with `version` from now on."""
        ...


@dataclass(frozen=True)
class Sampling:
    """How `Policy.generate` draws an utterance."""

    max_new_tokens: int = 32
    """Most ids sampled per utterance, the stop token included."""
    temperature: float = 1.0
    """Logits are divided by it before sampling; 0 is greedy decoding."""
    top_p: float = 1.0
    """Nucleus mass sampled from, in (0, 1]; the stored log-probs ignore it."""
    stop_on_newline: bool = True
    """A token whose text holds a newline ends the utterance, as eos always does."""

    @classmethod
    def from_config(cls, gen, greedy: bool = False) -> Sampling:
        """From an `archer.config.GenerationConfig` (or anything with its four fields);
        `greedy` sets the temperature to 0."""
        return cls(
            max_new_tokens=int(gen.max_new_tokens),
            temperature=0.0 if greedy else float(gen.temperature),
            top_p=float(gen.top_p),
            stop_on_newline=bool(gen.stop_on_newline),
        )


@dataclass
class Scores:
    """What one scoring forward returns (`Policy.score`)."""

    logp: torch.Tensor
    """[B, T] log pi_T of each action id, 0 elsewhere."""
    entropy: torch.Tensor | None = None
    """[B, T] entropy of pi_T(.|prefix) at each action position, 0 elsewhere."""
    hidden: torch.Tensor | None = None
    """[B, K, H] the LM head's input at the last K = (longest action) + 1 columns."""


@dataclass
class Generation:
    """One sampled utterance per observation, as the env and the learner need it."""

    texts: list[str]
    """The decoded ids without their stop token (special tokens skipped, not stripped)."""
    action_ids: list[list[int]]
    """The sampled ids, the stop token included when one was sampled; an utterance cut by
    `max_new_tokens` ends without one."""
    logprobs: list[list[float]]
    """log pi_T of each id of `action_ids` (temperature applied, top-p not; greedy: T = 1)."""


@dataclass
class TokenBatch:
    """(prompt, action) pairs as model inputs, one row each, left-padded so that every row
    ends at column T-1 (its last action id)."""

    input_ids: torch.Tensor
    """[B, T] prompt ids then action ids, padding first."""
    attention_mask: torch.Tensor
    """[B, T] 1 on the prompt and action ids."""
    position_ids: torch.Tensor
    """[B, T] 0 at a row's first id, counting up (0 on padding)."""
    action_mask: torch.Tensor
    """[B, T] float, 1.0 on the action ids only."""
    behaviour_logp: torch.Tensor | None = None
    """[B, T] the acting policy's log-probs at the action positions, 0 elsewhere."""

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def select(self, rows: slice | list[int]) -> TokenBatch:
        """The batch of `rows` only, without the leading columns that are padding in all."""
        index = rows if isinstance(rows, slice) else torch.as_tensor(rows, dtype=torch.long)
        mask = self.attention_mask[index]  # [b, T]
        used = torch.nonzero(mask.sum(0) > 0).flatten()
        first = int(used[0]) if len(used) else mask.shape[1]

        def cut(t: torch.Tensor) -> torch.Tensor:
            return t[index][:, first:]  # [b, T - first]

        return TokenBatch(
            cut(self.input_ids),
            cut(self.attention_mask),
            cut(self.position_ids),
            cut(self.action_mask),
            None if self.behaviour_logp is None else cut(self.behaviour_logp),
        )

    @property
    def action_tokens(self) -> int:
        """Number of action ids in the batch."""
        return int(self.action_mask.sum())


def inverse_cdf_sample(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One index per row of `probs` [B, V] (rows sum to 1, up to rounding) for uniforms `u`
    [B] in [0, 1): the first index whose cumulative probability exceeds u times the row's
    total -> [B]. That is a draw from the row's distribution; an index of probability 0 is
    never returned. Much faster than `torch.multinomial` on CPU for one draw per row."""
    cdf = probs.cumsum(-1)  # [B, V]
    idx = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(-1)  # [B]
    # The first index whose cdf exceeds u * total has p > 0 (a zero p leaves the cdf where it
    # was). Only where u * total rounds up to the total does it run past the end: there the
    # draw is the last index with p > 0 (three passes over [rows, V], so only for those rows).
    over = idx >= probs.shape[-1]
    if bool(over.any()):
        idx[over] = probs.shape[-1] - 1 - (probs[over].flip(-1) > 0).int().argmax(-1)
    return idx


TRAINING_HEADS = "_archer_training_heads"
"""Attribute of a policy model naming the modules `attach_head` added to it."""


def attach_head(model: PreTrainedModel, name: str, head: torch.nn.Module) -> None:
    """Add `head` to `model` as submodule `name`: it trains with the model (an engine built
    afterwards owns its parameters, and its checkpoints hold it), but it is not part of the
    policy: `save_pretrained` leaves it out (the HF export loads as a plain causal LM) and so
    does `acting_state_dict` (rollout workers' models have no such head)."""
    if hasattr(model, name):
        raise ValueError(f"the policy model already has an attribute {name!r}")
    model.add_module(name, head)
    setattr(model, TRAINING_HEADS, (*getattr(model, TRAINING_HEADS, ()), name))
    ignored = set(model._keys_to_ignore_on_save or ())
    model._keys_to_ignore_on_save = ignored | {f"{name}.{k}" for k in head.state_dict()}


def head_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """Name prefixes of the heads `attach_head` added to `model` (not part of acting)."""
    return tuple(f"{name}." for name in getattr(model, TRAINING_HEADS, ()))


def acting_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model.state_dict()` without the heads `attach_head` added: the weights a copy of the
    policy elsewhere (a rollout worker) loads."""
    heads = head_prefixes(model)
    return {k: v for k, v in model.state_dict().items() if not k.startswith(heads)}


def _checkpoint_dir(path: str | Path) -> Path:
    """`path` if it holds a Hugging Face checkpoint, else a PolicyLoadError saying so."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise PolicyLoadError(
            f"no Hugging Face checkpoint at {path} (expected config.json and weights); "
            "train one with `archer sft` or pass a local model directory"
        )
    return path


def fuse_tanh_gelu(model: torch.nn.Module) -> int:
    """Swap transformers' `NewGELUActivation` (GPT-2's "gelu_new": tanh-approximate GELU as
    five elementwise ops) for `torch.nn.functional.gelu(approximate="tanh")`, the same
    function in one kernel (outputs agree to 3e-7 in fp32): on CPU the model's forward takes
    half the time and forward + backward two thirds at GPT-2 4 x 256. The modules carry no
    weights, so the state dict and the saved config are unchanged. Returns the swaps made."""
    from transformers.activations import ACT2FN, NewGELUActivation

    swaps = 0
    for module in model.modules():
        for name, child in list(module.named_children()):
            if type(child) is NewGELUActivation:
                setattr(module, name, ACT2FN["gelu_pytorch_tanh"])
                swaps += 1
    return swaps


class Policy:
    """A causal LM and its tokenizer on `device`. `reserve` is the room every prompt leaves
    for the utterance, at acting and scoring alike; set it to `generation.max_new_tokens`."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer,
        device: str = "cpu",
        max_context_tokens: int = 512,
        reserve: int = 32,
    ):
        if tokenizer.eos_token_id is None:
            raise ValueError("the policy tokenizer needs an eos token to end utterances")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        fuse_tanh_gelu(model)
        self.model = model.to(device).eval()  # acting and RL scoring run without dropout
        self.tokenizer = tokenizer
        self.device = device
        limit = getattr(model.config, "n_positions", None) or getattr(
            model.config, "max_position_embeddings", max_context_tokens
        )
        self.max_context_tokens = min(max_context_tokens, limit)
        if not 1 <= reserve < self.max_context_tokens:
            raise ValueError(
                f"reserve={reserve} must be in [1, {self.max_context_tokens}) "
                "(the context, max_context_tokens, must hold a prompt besides the utterance)"
            )
        self.reserve = reserve
        self.token_engine: TokenEngine | None = None
        """A generation backend that replaces the model's own sampling loop in `generate`
        (`archer.rollout.vllm_backend`); prompts, stops and decoding stay this class's."""
        vocab = tokenizer.get_vocab()
        self._newline_ids = torch.tensor(
            [i for t, i in vocab.items() if "\n" in tokenizer.convert_tokens_to_string([t])],
            dtype=torch.long,
        )
        digest = json.dumps([sorted(vocab.items()), tokenizer.eos_token_id]).encode()
        self._fingerprint = hashlib.sha256(digest).hexdigest()[:16]

    # --------------------------------------------------------------------------- io
    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str = "cpu", max_context_tokens: int = 512, reserve: int = 32
    ) -> Policy:
        path = _checkpoint_dir(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path))
        return cls(
            model, tokenizer, device=device, max_context_tokens=max_context_tokens, reserve=reserve
        )

    @classmethod
    def for_engine(cls, path: str | Path, engine: TokenEngine, max_context_tokens: int = 512,
                   reserve: int = 32) -> Policy:
        """The tokenizer at `path` and a weightless skeleton of its model (on the meta
        device: no memory), generating through `engine`, which holds the weights."""
        path = _checkpoint_dir(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(path)))
        policy = cls(model, tokenizer, device="meta", max_context_tokens=max_context_tokens,
                     reserve=reserve)
        policy.token_engine = engine
        return policy

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))

    @property
    def fingerprint(self) -> str:
        """sha256 (16 hex digits) of the vocabulary and eos id: ids from a policy with another
        fingerprint mean other tokens."""
        return self._fingerprint

    # ----------------------------------------------------------------------- tokens
    def encode_prompt(self, observation: str) -> list[int]:
        return self.tokenizer(observation, add_special_tokens=False)["input_ids"]

    def action_ids_for(self, text: str) -> list[int]:
        """`encode(text) + [eos]`, cut to `reserve` ids: the ids of an utterance that carries
        none (scripted, offline), as long as a sampled one can be."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return (ids + [self.tokenizer.eos_token_id])[: self.reserve]

    def prompt_ids(self, observation: str) -> list[int]:
        """The observation's ids, cut to leave `reserve` ids of room in the context.

        The first line of an observation is the task prompt (Twenty Questions' header, the
        WebShop instruction); it is encoded on its own and always kept, and an over-long
        history loses its oldest turns after it. An empty observation is the eos id alone (a
        first token needs something to be predicted from). Acting and scoring both use this
        one function, so a policy is trained on exactly the prompts it acts from.
        """
        head, newline, tail = observation.partition("\n")
        head_ids = self.encode_prompt(head + newline)
        tail_ids = self.encode_prompt(tail) if tail else []
        room = max(1, self.max_context_tokens - self.reserve)
        if not head_ids and not tail_ids:
            return [self.tokenizer.eos_token_id]
        if len(head_ids) + len(tail_ids) <= room:
            return head_ids + tail_ids
        if len(head_ids) >= room:
            return (head_ids + tail_ids)[-room:]
        return head_ids + tail_ids[len(tail_ids) - (room - len(head_ids)) :]

    def _left_padded(
        self, rows: list[list[int]] | list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask, position_ids), each [B, T], of `rows` padded on the left."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, r in enumerate(rows):
            ids[row, width - len(r) :] = torch.as_tensor(r, dtype=torch.long)
            mask[row, width - len(r) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [B, T]
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    # ------------------------------------------------------------------- generation
    @torch.no_grad()
    def generate(
        self,
        observations: list[str],
        sampling: Sampling,
        seeds: list[int] | None = None,
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        guide: Guide | None = None,
    ) -> Generation:
        """One utterance per observation, `chunk_size` rows at a time (None: all at once).

        `seeds` gives every row its own sampling stream, so an utterance depends on its seed
        and the weights only, not on the rows that share its batch (or its rollout worker).
        Otherwise rows draw from `generator`. A `guide` replaces the logits of every step
        (`Guide.adjust`) before sampling.
        """
        if sampling.max_new_tokens > self.reserve:
            raise ValueError(
                f"max_new_tokens={sampling.max_new_tokens} exceeds the policy's reserve="
                f"{self.reserve}: prompts leave room for {self.reserve} ids only (build the "
                "policy with reserve=generation.max_new_tokens)"
            )
        if seeds is not None and len(seeds) != len(observations):
            raise ValueError(f"got {len(seeds)} seeds for {len(observations)} observations")
        if chunk_size is not None and chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        if self.token_engine is not None:
            prompt_lists = [self.prompt_ids(o) for o in observations]
            action_ids, logprobs = self._engine_generate(prompt_lists, sampling, seeds, guide)
            return self._finish(action_ids, logprobs, sampling)
        # One int32 tensor per prompt: a critic phase samples for thousands of 500-token
        # states at once, and Python lists of ints take 36 bytes a token.
        prompts = [torch.tensor(self.prompt_ids(o), dtype=torch.int32) for o in observations]
        self.model.eval()
        # Chunks of similar prompt lengths: a chunk is left-padded to its longest prompt, so
        # random chunks of a buffer's states (lengths 10 to 200+) mostly compute padding.
        # Equal prompts next to each other too (a chunk prefills each distinct prompt once);
        # crc32, not hash(), so the order is the same in every process.
        order = sorted(range(len(prompts)),
                       key=lambda i: (len(prompts[i]), zlib.crc32(prompts[i].numpy().tobytes())))
        action_ids: list[list[int]] = [[] for _ in prompts]
        logprobs: list[list[float]] = [[] for _ in prompts]
        step = chunk_size or max(1, len(observations))
        for start in range(0, len(order), step):
            rows = order[start : start + step]
            ids, lps = self._generate_chunk(
                [prompts[i] for i in rows],
                sampling,
                None if seeds is None else [seeds[i] for i in rows],
                generator,
                guide,
            )
            for i, row_ids, row_lps in zip(rows, ids, lps, strict=True):
                action_ids[i], logprobs[i] = row_ids, row_lps
        release_free_memory()  # the chunks' caches and activations (archer.memory)
        return self._finish(action_ids, logprobs, sampling)

    def _engine_generate(self, prompts: list[list[int]], sampling: Sampling,
                         seeds: list[int] | None, guide: Guide | None,
                         ) -> tuple[list[list[int]], list[list[float]]]:
        """Sampled ids (stop token included) and their log-probs from the token engine."""
        assert self.token_engine is not None
        if guide is not None:
            raise ValueError("a value guide (ILQL's decoding) steers every step of the Hugging "
                             "Face sampling loop; a token engine (rollout.backend) cannot apply "
                             "it: use rollout.backend=hf")
        if seeds is None:
            raise ValueError("a token engine samples each row from its own seed: pass seeds")
        ids, lps = self.token_engine.generate(prompts, sampling, [int(s) for s in seeds],
                                              self._stop_ids(sampling).tolist())
        if len(ids) != len(prompts) or len(lps) != len(prompts) or any(
                len(i) != len(lp) for i, lp in zip(ids, lps, strict=True)):
            raise RuntimeError("the token engine returned a row count or a log-prob count that "
                               "does not match its ids")
        return ids, lps

    def _finish(self, action_ids: list[list[int]], logprobs: list[list[float]],
                sampling: Sampling) -> Generation:
        """The sampled ids as a Generation: counted, and decoded without their stop token."""
        out = Generation([], action_ids, logprobs)
        count("generated_tokens", sum(len(r) for r in action_ids))
        stops = set(self._stop_ids(sampling).tolist())
        out.texts = [  # what the env receives: the ids without their stop token, decoded
            self.tokenizer.decode(
                ids[:-1] if ids and ids[-1] in stops else ids, skip_special_tokens=True
            )
            for ids in out.action_ids
        ]
        return out

    def _stop_ids(self, sampling: Sampling) -> torch.Tensor:
        """The ids that end an utterance: eos, and every newline token under stop_on_newline."""
        eos = torch.tensor([self.tokenizer.eos_token_id], dtype=torch.long)
        return torch.cat([eos, self._newline_ids]) if sampling.stop_on_newline else eos

    def _generate_chunk(
        self,
        prompts: list[list[int]] | list[torch.Tensor],
        sampling: Sampling,
        seeds: list[int] | None,
        generator: torch.Generator | None,
        guide: Guide | None = None,
    ) -> tuple[list[list[int]], list[list[float]]]:
        """Sampled ids (stop token included) and their log-probs for one batch of prompts."""
        ids, mask, positions = self._left_padded(prompts)
        stop_ids = self._stop_ids(sampling).to(self.device)
        row_generators = (
            [torch.Generator().manual_seed(int(s)) for s in seeds] if seeds is not None else None
        )
        seen: list[torch.Tensor] = []  # the LM head's input of each forward, for the guide
        hook = None
        if guide is not None:
            head = self.model.get_output_embeddings()
            hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0][:, -1]))
        try:
            return self._sample_loop(ids, mask, positions, sampling, stop_ids, row_generators,
                                     generator, guide, seen)
        finally:
            if hook is not None:
                hook.remove()

    def _sample_loop(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        sampling: Sampling,
        stop_ids: torch.Tensor,
        row_generators: list[torch.Generator] | None,
        generator: torch.Generator | None,
        guide: Guide | None,
        seen: list[torch.Tensor],
    ) -> tuple[list[list[int]], list[list[float]]]:
        batch = ids.shape[0]
        # transformers 5 calls the KV cache `cache` (`past_key_values` is deprecated)
        kw = "cache" if "cache" in inspect.signature(self.model.forward).parameters \
            else "past_key_values"
        past, logits, twins = self._prefill(ids, mask, positions, sampling.max_new_tokens, kw)
        if guide is not None:  # the prefill's forwards, one per row part
            seen[:] = [torch.cat(seen) if twins is None else torch.cat(seen)[twins]]
        next_pos = positions[:, -1:] + 1  # [B, 1]
        finished = torch.zeros(batch, dtype=torch.bool, device=self.device)
        generated: list[list[int]] = [[] for _ in range(batch)]
        logprobs: list[list[float]] = [[] for _ in range(batch)]
        for _ in range(sampling.max_new_tokens):
            if guide is not None:
                logits = guide.adjust(seen.pop(), logits)  # [B, V]
            token, token_logp = self._choose(
                logits, sampling.temperature, sampling.top_p, generator, row_generators
            )
            token_list, logp_list = token.tolist(), token_logp.tolist()
            for row in torch.nonzero(~finished).flatten().tolist():
                generated[row].append(token_list[row])
                logprobs[row].append(logp_list[row])
            finished |= torch.isin(token, stop_ids)
            if bool(finished.all()):
                break
            mask = torch.cat(
                [mask, torch.ones((batch, 1), dtype=mask.dtype, device=self.device)], 1
            )
            out = self.model(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=next_pos,
                use_cache=True,
                **{kw: past},
            )
            past, logits = _returned_cache(out), out.logits[:, -1]  # [B, V]
            next_pos = next_pos + 1
        return generated, logprobs

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                 room: int, kw: str) -> tuple[Any, torch.Tensor, torch.Tensor | None]:
        """The prompts' forward: (the KV cache, with `room` steps to grow, the last
        position's logits [B, V], and the `distinct_rows` inverse [B] or None).

        A prompt that several rows share (n samples of one state: a critic phase draws each
        buffer state about five times, GRPO groups, the first turn of every episode) is
        prefilled once and its keys, values and logits copied to its twins, as vLLM shares a
        prompt between the n samples of a request; each row then decodes from its own seed.
        The distinct prompts go `PREFILL_ROWS` rows per forward into preallocated caches that
        are then joined: a whole chunk at once holds the MLP and attention activations of
        every row of a long prompt (at 64 x 512 tokens of GPT-2 4 x 256, 0.65 GB beside the
        cache), where decoding, one token a step, keeps the whole chunk. The rows of a batch do
        not interact, so a row's numbers are the same either way but for float rounding (a
        matmul's blocking depends on its row count)."""
        # A model whose layers the preallocated cache does not cover builds its own cache,
        # which is neither joined nor shared: its prompts go in one forward.
        cache = _preallocated_cache(self.model.config, room)
        if cache is None:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=True, logits_to_keep=1)
            return _returned_cache(out), out.logits[:, -1], None
        shared = distinct_rows(ids, mask)
        first, twins = shared if shared is not None else (None, None)
        if first is not None:
            ids, mask, positions = ids[first], mask[first], positions[first]
        parts, logits = [], []
        for start in range(0, ids.shape[0], PREFILL_ROWS):
            rows = slice(start, start + PREFILL_ROWS)
            if start:  # each part fills a cache of its own
                cache = _preallocated_cache(self.model.config, room)
            out = self.model(input_ids=ids[rows], attention_mask=mask[rows],
                             position_ids=positions[rows], use_cache=True, logits_to_keep=1,
                             **{kw: cache})
            parts.append(_returned_cache(out))
            logits.append(out.logits[:, -1])  # [rows, V]
            del out
        logits = torch.cat(logits) if len(logits) > 1 else logits[0]
        if len(parts) == 1 and twins is None:
            return parts[0], logits, None
        past = type(parts[0]).joined(parts, twins)
        return past, (logits if twins is None else logits[twins]), twins

    @staticmethod
    def _choose(
        logits: torch.Tensor,
        temperature: float,
        top_p: float,
        generator: torch.Generator | None,
        row_generators: list[torch.Generator] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Next token per row ([B]) and its log-probability log pi_T (top-p not applied; the
        greedy choice's under temperature 1), computed as `token_logprobs` computes it."""
        logits = logits.float()
        if temperature == 0:
            token = logits.argmax(-1)  # [B]
            return token, torch.log_softmax(logits, -1).gather(-1, token[:, None]).squeeze(-1)
        logp = torch.log_softmax(logits if temperature == 1 else logits / temperature,
                                 dim=-1)  # [B, V]
        probs = logp.exp()  # [B, V]
        if top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)  # [B, V]
            keep = sorted_p.cumsum(-1) - sorted_p < top_p  # always keeps the top token
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)  # [B, V]
            probs = probs / probs.sum(-1, keepdim=True)
        if row_generators is not None:
            u = torch.cat([torch.rand(1, generator=g) for g in row_generators])  # [B]
        else:
            gen = generator if generator is not None and generator.device == probs.device else None
            u = torch.rand(probs.shape[0], generator=gen, device=probs.device)
        token = inverse_cdf_sample(probs, u.to(probs.device))  # [B]
        return token, logp.gather(-1, token[:, None]).squeeze(-1)

    # ------------------------------------------------------------------ log-probs
    def batch(
        self,
        observations: list[str],
        action_ids: list[list[int]],
        behaviour_logp: list[list[float]] | None = None,
    ) -> TokenBatch:
        """The (prompt_ids(observation), action ids) pairs as one left-padded `TokenBatch`;
        `behaviour_logp` (one per action id) fills its `behaviour_logp`."""
        if len(observations) != len(action_ids):
            raise ValueError(f"{len(observations)} observations but {len(action_ids)} actions")
        if not observations:
            raise ValueError("a TokenBatch needs at least one (observation, action) pair")
        if behaviour_logp is not None and len(behaviour_logp) != len(action_ids):
            raise ValueError(f"{len(behaviour_logp)} log-prob lists for {len(action_ids)} actions")
        for row, a in enumerate(action_ids):
            if not 1 <= len(a) <= self.reserve:
                raise ValueError(
                    f"action {row} has {len(a)} ids; an action has 1 to reserve={self.reserve} "
                    "(generation.max_new_tokens) ids"
                )
            if behaviour_logp is not None and len(behaviour_logp[row]) != len(a):
                raise ValueError(
                    f"action {row} has {len(a)} ids but {len(behaviour_logp[row])} log-probs"
                )
        prompts = [self.prompt_ids(o) for o in observations]
        ids, mask, positions = self._left_padded(
            [p + list(a) for p, a in zip(prompts, action_ids, strict=True)]
        )
        width = ids.shape[1]
        action_mask = torch.zeros((len(prompts), width), dtype=torch.float32)
        behaviour = None if behaviour_logp is None else torch.zeros_like(action_mask)
        for row, a in enumerate(action_ids):
            action_mask[row, width - len(a) :] = 1.0
            if behaviour is not None:
                behaviour[row, width - len(a) :] = torch.tensor(behaviour_logp[row])
        return TokenBatch(
            ids,
            mask,
            positions,
            action_mask.to(self.device),
            None if behaviour is None else behaviour.to(self.device),
        )

    def token_logprobs(
        self,
        batch: TokenBatch,
        model: Callable[..., Any] | None = None,
        temperature: float = 1.0,
        grad: bool = False,
    ) -> torch.Tensor:
        """[B, T] log pi_T of each action id of `batch` (0 elsewhere); temperature 0 counts
        as 1, as greedy log-probs are stored. `model` scores with another module of the same
        vocabulary (a DeepSpeed engine, a frozen reference); default: this policy's."""
        return self.score(batch, model, temperature, grad).logp

    def score(
        self,
        batch: TokenBatch,
        model: Callable[..., Any] | None = None,
        temperature: float = 1.0,
        grad: bool = False,
        entropy: bool = False,
        hidden: bool = False,
    ) -> Scores:
        """`token_logprobs` of one forward, with what else that forward can give: `entropy`,
        [B, T] the entropy of pi_T(.|prefix) at each action position (0 elsewhere), and
        `hidden`, [B, K, H] the hidden state the LM head reads at the last K columns (after
        the final norm; what a value head on the policy reads).

        Rows end at column T-1, so the logits of the last K = (longest action) + 1 positions
        predict every action id: only those are computed (`logits_to_keep=K`).
        """
        model = model if model is not None else self.model
        temperature = temperature if temperature > 0 else 1.0
        width = batch.input_ids.shape[1]
        longest = int(batch.action_mask.sum(-1).max())
        seen: list[torch.Tensor] = []
        hook = None
        if hidden:  # the LM head's input: the same tensor whatever the architecture names it
            head = getattr(model, "module", model).get_output_embeddings()
            hook = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        with torch.set_grad_enabled(grad):
            try:
                out = model(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    position_ids=batch.position_ids,
                    logits_to_keep=longest + 1,
                )
            finally:
                if hook is not None:
                    hook.remove()
            logits = out.logits[:, -(longest + 1) : -1]  # [B, L, V] predicting columns T-L..T-1
            logits = logits.float() if temperature == 1 else logits.float() / temperature
            logp = torch.log_softmax(logits, dim=-1)  # [B, L, V]
            targets = batch.input_ids[:, width - longest :]  # [B, L]
            picked = logp.gather(-1, targets[:, :, None]).squeeze(-1)  # [B, L]
            picked = picked * batch.action_mask[:, width - longest :]  # [B, L]
            picked = torch.nn.functional.pad(picked, (width - longest, 0))  # [B, T]
            ent = None
            if entropy:
                ent = -(logp.exp() * logp).sum(-1) * batch.action_mask[:, width - longest :]
                ent = torch.nn.functional.pad(ent, (width - longest, 0))  # [B, T]
        return Scores(picked, ent, seen[-1][:, -(longest + 1):] if hidden else None)
