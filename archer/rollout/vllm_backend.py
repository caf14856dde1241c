"""vLLM as a rollout backend (`rollout.backend=vllm`), and its CPU test double (`vllm_fake`).

Each Ray rollout worker holds one engine (`open_engine`); its `Policy` keeps the tokenizer, the
prompt rule and the stop ids, and samples through the engine (`Policy.token_engine`), so acting
and scoring still build the same prompt and the learner trains on the engine's own ids:

    generate        prompt token ids in (never text), one seed per row; the sampled ids and
                    log pi_T of each out (vLLM: `logprobs_mode="processed_logprobs"`, the
                    log-softmax of logits / T, which is what the learner recomputes)
    update_weights  the acting state dict, bucket by bucket, through vLLM's own weight-transfer
                    API (the CUDA IPC backend, packed into a buffer of `cluster.weight_bucket_mb`:
                    the engine never holds a second copy of the model); a version string per
                    push (`finish_weight_update(weight_version=)`)

vLLM is optional: `pip install 'archer[vllm]'` (pinned in pyproject.toml; CUDA only). The code
below is written against vLLM 0.33.0's API. `FakeVLLMEngine` has the same interface over a
Hugging Face model on CPU: the tests run the worker, the weight buckets and the log-prob check
through it. HF generate (`rollout.backend=hf`) stays the default.

Limits: `generation.top_p` must be 1 (vLLM's processed log-probs are renormalised over the
nucleus, the learner's are not), and ILQL's value-guided decoding (a per-step guide) runs only
under `hf`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from archer.models.policy import Policy, Sampling

BACKENDS = ("hf", "vllm", "vllm_fake")


def state_buckets(state: Mapping[str, torch.Tensor], max_bytes: int,
                  ) -> Iterator[dict[str, torch.Tensor]]:
    """`state` as consecutive {name: tensor} dicts of at most `max_bytes` each (a tensor larger
    than that is a bucket of its own), in the state dict's order."""
    bucket: dict[str, torch.Tensor] = {}
    size = 0
    for name, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > max_bytes:
            yield bucket
            bucket, size = {}, 0
        bucket[name] = tensor
        size += nbytes
    if bucket:
        yield bucket


def check_complete(expected: Mapping[str, tuple[tuple[int, ...], torch.dtype]],
                   received: Mapping[str, tuple[tuple[int, ...], torch.dtype]]) -> None:
    """Every expected parameter arrived once, with its shape (a push that misses one would act
    with stale weights under a new version)."""
    missing = sorted(set(expected) - set(received))
    extra = sorted(set(received) - set(expected))
    wrong = sorted(k for k in set(expected) & set(received) if expected[k][0] != received[k][0])
    if missing or extra or wrong:
        raise ValueError(f"weight push incomplete: missing {missing[:5]}, unexpected "
                         f"{extra[:5]}, wrong shape {wrong[:5]}")


# ---------------------------------------------------------------------------- vLLM
class VLLMEngine:
    """One vLLM `LLM` in this process (a rollout worker's GPU share), sampling from prompt ids
    with a seed per request and taking weights through vLLM's weight-transfer API."""

    def __init__(self, model_dir: str, max_model_len: int, gpu_memory_utilization: float,
                 bucket_bytes: int, seed: int = 0):
        try:
            from vllm import LLM
            from vllm.config import WeightTransferConfig
        except ImportError as err:
            raise ImportError("rollout.backend=vllm needs vLLM: pip install 'archer[vllm]' "
                              f"(a CUDA machine) ({err})") from None
        self.llm = LLM(
            model=model_dir, skip_tokenizer_init=True, max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization, seed=seed,
            logprobs_mode="processed_logprobs",
            weight_transfer_config=WeightTransferConfig(backend="ipc"))
        self.bucket_bytes = bucket_bytes
        self.device = "cuda"
        """Where a pushed tensor goes before vLLM packs it (this worker's GPU)."""
        self.version = 0
        self._sender: Any = None

    def generate(self, prompts: list[list[int]], sampling: Sampling, seeds: list[int],
                 stop_ids: list[int]) -> tuple[list[list[int]], list[list[float]]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(
            n=1, temperature=sampling.temperature, top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens, seed=seed, stop_token_ids=list(stop_ids),
            logprobs=0, detokenize=False) for seed in seeds]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts],
                                    params, use_tqdm=False)
        return _ids_and_logprobs(outputs, set(stop_ids))

    def update_weights(self, buckets: Iterable[Mapping[str, torch.Tensor]], version: int,
                       ) -> None:
        """One weight-transfer round: vLLM's IPC trainer engine packs the tensors, one at a
        time moved to this GPU, into its buffer and the engine loads them layer by layer."""
        source = _bucket_source(buckets, self.device)
        if self._sender is None:
            from vllm.distributed.weight_transfer.ipc_engine import (
                IPCTrainerInitInfo,
                IPCTrainerWeightTransferEngine,
            )

            self._sender = IPCTrainerWeightTransferEngine.trainer_init(
                IPCTrainerInitInfo(rank=0, packed=True,
                                   packed_buffer_size_bytes=self.bucket_bytes),
                client=_InProcessClient(self.llm), source=source)
        self._sender.source = source
        self._sender.client.version = str(version)
        self._sender.send_weights()
        self.version = version


class _InProcessClient:
    """vLLM's `VLLMWeightSyncClient` protocol over an `LLM` in this process; `version` is the
    version string the round being sent commits."""

    def __init__(self, llm: Any):
        self.llm, self.version = llm, "0"

    def init_weight_transfer_engine(self, init_info: dict[str, Any]) -> None:
        self.llm.init_weight_transfer_engine({"init_info": init_info})

    def start_weight_update(self) -> None:
        self.llm.start_weight_update()

    def update_weights(self, update_info: dict[str, Any]) -> None:
        self.llm.update_weights({"update_info": update_info})

    def finish_weight_update(self, weight_version: str | None = None) -> None:
        self.llm.finish_weight_update(weight_version=weight_version or self.version)


def _bucket_source(buckets: Iterable[Mapping[str, torch.Tensor]], device: str) -> Any:
    """The pushed buckets as a vLLM `WeightSource` (defined here: vllm imports lazily)."""
    from vllm.distributed.weight_transfer.base import ParamMeta, WeightSource

    class BucketSource(WeightSource):
        """The pushed buckets as a vLLM `WeightSource`; each tensor goes to the GPU only
        when the packer asks for it."""

        def __init__(self, buckets: Iterable[Mapping[str, torch.Tensor]]):
            self._buckets = list(buckets)

        @cached_property
        def metadata(self) -> list[ParamMeta]:
            return [ParamMeta(k, v.dtype, tuple(v.shape)) for b in self._buckets
                    for k, v in b.items()]

        def iter_full(self) -> Iterator[tuple[str, torch.Tensor]]:
            for bucket in self._buckets:
                for name, tensor in bucket.items():
                    yield name, tensor.to(device)

    return BucketSource(buckets)


def _ids_and_logprobs(outputs: list[Any], stops: set[int],
                      ) -> tuple[list[list[int]], list[list[float]]]:
    """(ids, log-probs) per request from vLLM's `RequestOutput`s: the sampled token's entry
    at each position (logprobs=0 returns exactly that one)."""
    ids, lps = [], []
    for out in outputs:
        done = out.outputs[0]
        row = list(done.token_ids)
        if done.finish_reason == "stop" and (not row or row[-1] not in stops):
            raise RuntimeError(f"vLLM stopped on {done.stop_reason!r} without returning the "
                               "stop id: the learner would train on a different utterance")
        ids.append(row)
        lps.append([float(pos[tok].logprob) for pos, tok in zip(done.logprobs, row,
                                                                  strict=True)])
    return ids, lps


# ---------------------------------------------------------------------------- fake
class FakeVLLMEngine:
    """`VLLMEngine`'s interface over a Hugging Face model on CPU, for tests: ids in, ids and
    log pi_T out (the HF sampling loop with the same per-row seeds, so an HF run and a fake
    run sample the same utterances); weights only through `update_weights`, checked for
    completeness, bucket by bucket."""

    def __init__(self, model_dir: str, max_context_tokens: int, reserve: int):
        self._policy = Policy.from_pretrained(model_dir, "cpu", max_context_tokens, reserve)
        self.version = 0
        self.pushes = 0
        self.buckets_received = 0
        self._shapes = {k: (tuple(v.shape), v.dtype)
                        for k, v in self._policy.model.state_dict().items()}

    def generate(self, prompts: list[list[int]], sampling: Sampling, seeds: list[int],
                 stop_ids: list[int]) -> tuple[list[list[int]], list[list[float]]]:
        if set(stop_ids) != set(self._policy._stop_ids(sampling).tolist()):
            raise ValueError("stop ids differ from the model's own")
        return self._policy._generate_chunk(prompts, sampling, seeds, None)

    def update_weights(self, buckets: Iterable[Mapping[str, torch.Tensor]], version: int,
                       ) -> None:
        received: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        staged: dict[str, torch.Tensor] = {}
        for bucket in buckets:
            self.buckets_received += 1
            for name, tensor in bucket.items():
                if name in received:
                    raise ValueError(f"weight push: {name} arrived twice")
                received[name] = (tuple(tensor.shape), tensor.dtype)
                staged[name] = tensor
        check_complete(self._shapes, received)
        self._policy.model.load_state_dict(staged)
        self.version = version
        self.pushes += 1


def open_engine(cfg: Any, policy_dir: str | Path) -> VLLMEngine | FakeVLLMEngine:
    """The engine `cfg.rollout.backend` names, loaded from the HF checkpoint `policy_dir`."""
    backend = cfg.rollout.backend
    if backend == "vllm_fake":
        return FakeVLLMEngine(str(policy_dir), cfg.model.max_context_tokens,
                              cfg.generation.max_new_tokens)
    if backend == "vllm":
        return VLLMEngine(str(policy_dir), cfg.model.max_context_tokens,
                          cfg.rollout.vllm_gpu_memory_utilization,
                          int(cfg.cluster.weight_bucket_mb * 2**20), cfg.seed)
    raise ValueError(f"rollout.backend={backend!r} has no token engine (one of {BACKENDS})")
