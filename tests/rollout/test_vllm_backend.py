"""The vLLM rollout backend (archer/rollout/vllm_backend.py) on CPU: its fake engine samples
exactly what the HF policy samples and takes weights only as complete bucketed pushes; the real
engine's calls into vLLM (checked against a stand-in `vllm` package that records them) ask for
prompt ids, a seed per row, the sampled token's processed log-prob, and push weights through
vLLM's IPC weight-transfer engine in packed buffers with the version."""

import sys
import types
from dataclasses import dataclass

import pytest
import torch

from archer.config import ConfigError, load_config
from archer.models.policy import Policy, Sampling
from archer.rollout.vllm_backend import FakeVLLMEngine, VLLMEngine, state_buckets

OBSERVATIONS = [f"Questions:\nIs it a {w}? No.\n" * (i % 3) for i, w in
                enumerate(["cat", "dog", "car", "tree", "lamp", "river"])]
SAMPLING = Sampling(max_new_tokens=8, temperature=1.0)


@pytest.fixture(scope="module")
def policy_dir(tiny_policy, tmp_path_factory):
    path = tmp_path_factory.mktemp("policy")
    tiny_policy.save_pretrained(path)
    return path


def test_state_buckets_keep_order_and_cap_their_size():
    state = {"a": torch.zeros(10), "b": torch.zeros(30), "c": torch.zeros(5), "d": torch.zeros(3)}
    buckets = list(state_buckets(state, max_bytes=160))  # float32: a 40, b 120, c 20, d 12
    assert [list(b) for b in buckets] == [["a", "b"], ["c", "d"]]
    assert [list(b) for b in state_buckets(state, max_bytes=100)] == [["a"], ["b"], ["c", "d"]]
    assert all(b[k] is state[k] for b in buckets for k in b)  # views, not copies


def test_a_policy_on_the_fake_engine_samples_what_the_hf_policy_samples(policy_dir):
    hf = Policy.from_pretrained(policy_dir, max_context_tokens=256, reserve=8)
    engine = FakeVLLMEngine(str(policy_dir), 256, 8)
    on_engine = Policy.for_engine(policy_dir, engine, max_context_tokens=256, reserve=8)
    assert next(on_engine.model.parameters()).device.type == "meta"  # no second copy
    seeds = list(range(100, 100 + len(OBSERVATIONS)))
    a = hf.generate(OBSERVATIONS, SAMPLING, seeds=seeds)
    b = on_engine.generate(OBSERVATIONS, SAMPLING, seeds=seeds)
    assert a.action_ids == b.action_ids and a.texts == b.texts
    assert torch.allclose(torch.tensor(sum(a.logprobs, [])), torch.tensor(sum(b.logprobs, [])),
                          atol=1e-5)
    with pytest.raises(ValueError, match="own seed"):
        on_engine.generate(OBSERVATIONS, SAMPLING)
    with pytest.raises(ValueError, match="value guide"):
        on_engine.generate(OBSERVATIONS, SAMPLING, seeds=seeds, guide=object())


def test_the_fake_engine_takes_only_complete_pushes(policy_dir):
    engine = FakeVLLMEngine(str(policy_dir), 256, 8)
    state = {k: v + 0.5 for k, v in engine._policy.model.state_dict().items()}
    partial = dict(list(state.items())[1:])
    with pytest.raises(ValueError, match="missing"):
        engine.update_weights(state_buckets(partial, 4096), 3)
    assert engine.version == 0 and engine.pushes == 0  # nothing half-loaded under a version
    engine.update_weights(state_buckets(state, 4096), 3)
    assert engine.version == 3 and engine.buckets_received > 2
    assert all(torch.equal(v, state[k]) for k, v in engine._policy.model.state_dict().items())


# ------------------------------------------------------------------ a stand-in vLLM
@dataclass
class Logprob:
    logprob: float


@dataclass
class Completion:
    token_ids: list
    logprobs: list
    finish_reason: str
    stop_reason: object = None


@dataclass
class RequestOutput:
    outputs: list


class Recorder:
    """What the stand-in vLLM was asked."""

    def __init__(self):
        self.llm_kwargs, self.prompts, self.params, self.calls = None, None, None, []


@pytest.fixture
def fake_vllm(monkeypatch):
    rec = Recorder()

    class LLM:
        def __init__(self, **kwargs):
            rec.llm_kwargs = kwargs

        def generate(self, prompts, params, use_tqdm=True):
            rec.prompts, rec.params = prompts, params
            out = []
            for p, sp in zip(prompts, params, strict=True):
                ids = [p["prompt_token_ids"][-1] + 1, sp.stop_token_ids[0]]  # then a stop id
                out.append(RequestOutput([Completion(
                    ids, [{i: Logprob(-0.5 * (k + 1))} for k, i in enumerate(ids)], "stop")]))
            return out

        def init_weight_transfer_engine(self, request):
            rec.calls.append(("init", request))

        def start_weight_update(self):
            rec.calls.append(("start",))

        def update_weights(self, request):
            rec.calls.append(("update", request))

        def finish_weight_update(self, weight_version=None):
            rec.calls.append(("finish", weight_version))

    class SamplingParams:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class WeightTransferConfig:
        def __init__(self, backend):
            self.backend = backend

    class WeightSource:
        pass

    @dataclass(frozen=True)
    class ParamMeta:
        name: str
        dtype: torch.dtype
        shape: tuple

    @dataclass
    class IPCTrainerInitInfo:
        rank: int
        packed: bool = False
        packed_buffer_size_bytes: int = 0

    class IPCTrainerWeightTransferEngine:
        """Drives the client as vLLM's does: start, one update per packed buffer, finish."""

        @classmethod
        def trainer_init(cls, init_info, *, client, source):
            rec.calls.append(("trainer_init", init_info))
            engine = cls()
            engine.client, engine.source, engine.cap = client, source, (
                init_info.packed_buffer_size_bytes)
            client.init_weight_transfer_engine({"packed": init_info.packed})
            return engine

        def send_weights(self):
            self.client.start_weight_update()
            names, size = [], 0
            for name, tensor in self.source.iter_full():
                names.append(name)
                size += tensor.numel() * tensor.element_size()
                if size >= self.cap:
                    self.client.update_weights({"names": names})
                    names, size = [], 0
            if names:
                self.client.update_weights({"names": names})
            self.client.finish_weight_update()

    modules = {
        "vllm": types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams),
        "vllm.config": types.SimpleNamespace(WeightTransferConfig=WeightTransferConfig),
        "vllm.inputs": types.SimpleNamespace(TokensPrompt=dict),
        "vllm.distributed": types.SimpleNamespace(),
        "vllm.distributed.weight_transfer": types.SimpleNamespace(),
        "vllm.distributed.weight_transfer.base": types.SimpleNamespace(
            ParamMeta=ParamMeta, WeightSource=WeightSource),
        "vllm.distributed.weight_transfer.ipc_engine": types.SimpleNamespace(
            IPCTrainerInitInfo=IPCTrainerInitInfo,
            IPCTrainerWeightTransferEngine=IPCTrainerWeightTransferEngine),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return rec


def test_the_vllm_engine_asks_for_ids_seeds_and_processed_logprobs(fake_vllm):
    engine = VLLMEngine("/models/p", max_model_len=256, gpu_memory_utilization=0.4,
                        bucket_bytes=1024, seed=7)
    kw = fake_vllm.llm_kwargs
    assert kw["skip_tokenizer_init"] and kw["logprobs_mode"] == "processed_logprobs"
    assert kw["weight_transfer_config"].backend == "ipc" and kw["max_model_len"] == 256
    ids, lps = engine.generate([[5, 6], [9]], SAMPLING, seeds=[11, 12], stop_ids=[0, 3])
    assert fake_vllm.prompts == [{"prompt_token_ids": [5, 6]}, {"prompt_token_ids": [9]}]
    assert [p.seed for p in fake_vllm.params] == [11, 12]
    assert all(p.logprobs == 0 and p.stop_token_ids == [0, 3] and p.max_tokens == 8
               and not p.detokenize for p in fake_vllm.params)
    assert ids == [[7, 0], [10, 0]] and lps == [[-0.5, -1.0], [-0.5, -1.0]]


def test_a_stop_without_its_id_is_an_error_not_a_silent_drift(fake_vllm):
    from archer.rollout.vllm_backend import _ids_and_logprobs

    dropped = RequestOutput([Completion([4], [{4: Logprob(-1.0)}], "stop", stop_reason=3)])
    with pytest.raises(RuntimeError, match="without returning the stop id"):
        _ids_and_logprobs([dropped], {0, 3})


def test_the_vllm_engine_pushes_packed_buckets_with_the_version(fake_vllm):
    engine = VLLMEngine("/models/p", 256, 0.4, bucket_bytes=64)
    engine.device = "cpu"  # the stand-in has no GPU
    state = {f"w{i}": torch.full((8,), float(i)) for i in range(5)}  # 32 bytes each
    engine.update_weights(state_buckets(state, 64), version=4)
    engine.update_weights(state_buckets(state, 64), version=5)
    kinds = [c[0] for c in fake_vllm.calls]
    assert kinds.count("trainer_init") == 1 and kinds.count("init") == 1  # one handshake
    init = next(c[1] for c in fake_vllm.calls if c[0] == "trainer_init")
    assert init.packed and init.packed_buffer_size_bytes == 64 and init.rank == 0
    rounds = [c for c in fake_vllm.calls if c[0] in ("start", "update", "finish")]
    assert [c[0] for c in rounds] == ["start", "update", "update", "update", "finish"] * 2
    assert [c[1] for c in rounds if c[0] == "finish"] == ["4", "5"]
    sent = [n for c in rounds[:5] if c[0] == "update" for n in c[1]["update_info"]["names"]]
    assert sent == list(state) and engine.version == 5


@pytest.mark.parametrize("extra, match", [
    (["rollout.backend=vllm", "device=cuda", "rollout.num_gpus_per_worker=1",
      "generation.top_p=0.9"], "generation.top_p: must be 1"),
    (["rollout.backend=vllm"], "vllm needs device=cuda"),
    (["rollout.backend=vllm_fake", "rollout.num_workers=0"], "runs in Ray rollout workers"),
    (["rollout.backend=sglang"], "rollout.backend"),
])
def test_backend_settings_that_cannot_work_are_refused(extra, match):
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=extra)
