"""Tiny models built offline: a byte-level BPE tokenizer trained on env text and GPT-2-style
configs. They save and load exactly like any Hugging Face checkpoint."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

EOS, PAD = "<|endoftext|>", "<|pad|>"
PRESETS = {
    "tiny": {"n_embd": 128, "n_layer": 2, "n_head": 4},
    "small": {"n_embd": 256, "n_layer": 4, "n_head": 4},
}


def train_tokenizer(
    texts: Iterable[str], vocab_size: int = 1024, atomic: Iterable[str] = ()
) -> PreTrainedTokenizerFast:
    """Byte-level BPE (GPT-2 style) trained on `texts`: any string still encodes, bytes as a
    fallback, so text unseen in training never fails.

    `atomic` strings (an env's ids that a policy must copy, such as WebShop's product ids)
    become one token each, on top of `vocab_size`: copying one token is within reach of a
    tiny policy, copying the three or four BPE pieces of a random id mostly is not.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    terms = sorted(set(atomic))
    if terms:
        tok.add_tokens(terms)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD, unk_token=None
    )


def build_tiny_policy(
    tokenizer: PreTrainedTokenizerFast, size: str = "tiny", max_positions: int = 512, seed: int = 0
) -> GPT2LMHeadModel:
    """A randomly initialised GPT-2 of a preset size over `tokenizer`'s vocabulary."""
    if size not in PRESETS:
        raise ValueError(f"unknown tiny model size {size!r}; choose from {sorted(PRESETS)}")
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=max_positions,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # GPT-2's tanh GELU as one fused kernel ("gelu_new" computes the same function in
        # Python ops: a quarter of a tiny model's generation time on CPU)
        activation_function="gelu_pytorch_tanh",
        **PRESETS[size],
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config)
