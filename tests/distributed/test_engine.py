"""The actor engine: DeepSpeed (real, CPU + gloo, no compiled ops) against plain torch AdamW."""

import copy
import json
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from archer.config import DeepSpeedConfig
from archer.distributed.engine import (
    META_FILE,
    DeepSpeedActorEngine,
    TorchActorEngine,
    build_actor_engine,
    deepspeed_config,
)

LR, WD = 1e-3, 0.01  # Adam turns tiny gradient round-off into up to ~lr * 1e-4
VOCAB, SEQ = 300, 12


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models gain nothing from a second thread, and lose a lot on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    config = GPT2Config(
        n_embd=32,
        n_layer=1,
        n_head=2,
        vocab_size=VOCAB,
        n_positions=SEQ,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def batch(seed: int, size: int = 4) -> torch.Tensor:
    return torch.randint(0, VOCAB, (size, SEQ), generator=torch.Generator().manual_seed(seed))


def loss_of(engine, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the micro-batch (all rows the same length)."""
    return engine(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss


def optimizer_step(engine, ids: torch.Tensor, micro: int) -> list[bool]:
    """One actor step over `ids` in micro-batches of `micro`; returns step()'s answers."""
    applied = []
    for start in range(0, len(ids), micro):
        engine.backward(loss_of(engine, ids[start : start + micro]))
        applied.append(engine.step())
    return applied


def weights(engine) -> dict[str, torch.Tensor]:
    with engine.gathered_parameters():
        return {n: p.detach().float().clone() for n, p in engine.module.named_parameters()}


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def torch_engine(model, batch_size=4, micro=2, clip=0.5) -> TorchActorEngine:
    return build_actor_engine(
        model,
        DeepSpeedConfig(enabled=False, micro_batch_size=micro),
        lr=LR,
        batch_size=batch_size,
        grad_clip=clip,
        weight_decay=WD,
    )


def ds_engine(model, stage=0, batch_size=4, micro=2, clip=0.5) -> DeepSpeedActorEngine:
    ds = DeepSpeedConfig(enabled=True, zero_stage=stage, micro_batch_size=micro)
    return build_actor_engine(
        model, ds, lr=LR, batch_size=batch_size, grad_clip=clip, weight_decay=WD
    )


# ------------------------------------------------------------------------------ config
def test_deepspeed_config_zero0_fp32():
    ds = DeepSpeedConfig(zero_stage=0, precision="fp32", micro_batch_size=8)
    assert deepspeed_config(ds, batch_size=32, grad_clip=1.0) == {
        "train_batch_size": 32,  # 8 per micro-batch * 4 accumulated * 1 rank
        "train_micro_batch_size_per_gpu": 8,
        "gradient_accumulation_steps": 4,  # 32 // 8
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 0},
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
    }


def test_deepspeed_config_zero3_bf16_on_four_ranks():
    ds = DeepSpeedConfig(zero_stage=3, precision="bf16", micro_batch_size=2)
    assert deepspeed_config(ds, batch_size=32, grad_clip=0.0, world_size=4) == {
        "train_batch_size": 32,  # global: 2 per micro-batch * 4 accumulated * 4 ranks
        "train_micro_batch_size_per_gpu": 2,
        "gradient_accumulation_steps": 4,  # 32 // (2 * 4 ranks)
        "gradient_clipping": 0.0,
        "zero_optimization": {"stage": 3},
        "bf16": {"enabled": True},
        "fp16": {"enabled": False},
        "steps_per_print": 1_000_000_000,
        "wall_clock_breakdown": False,
        "zero_allow_untested_optimizer": True,
    }


def test_deepspeed_config_zero2_one_micro_batch():
    ds = DeepSpeedConfig(zero_stage=2, micro_batch_size=4)
    config = deepspeed_config(ds, batch_size=8, grad_clip=0.5, world_size=2)
    assert config["gradient_accumulation_steps"] == 1  # 8 // (4 * 2 ranks)
    assert config["train_batch_size"] == 8  # global
    assert config["zero_optimization"] == {"stage": 2}
    assert config["zero_allow_untested_optimizer"] is True


@pytest.mark.parametrize(
    "ds, batch_size, grad_clip, world_size, key",
    [
        (DeepSpeedConfig(micro_batch_size=3), 8, 1.0, 1, "deepspeed.micro_batch_size"),
        (DeepSpeedConfig(micro_batch_size=8), 4, 1.0, 1, "deepspeed.micro_batch_size"),
        (DeepSpeedConfig(), 0, 1.0, 1, "actor.batch_size"),
        (DeepSpeedConfig(), 8, -1.0, 1, "actor.grad_clip"),
        (DeepSpeedConfig(zero_stage=4), 8, 1.0, 1, "deepspeed.zero_stage"),
        (DeepSpeedConfig(precision="fp16"), 8, 1.0, 1, "deepspeed.precision"),
        (DeepSpeedConfig(micro_batch_size=0), 8, 1.0, 1, "deepspeed.micro_batch_size"),
        (DeepSpeedConfig(), 8, 1.0, 0, "world_size"),
        (DeepSpeedConfig(micro_batch_size=4), 4, 1.0, 2, "x 2 learner ranks"),
    ],
)
def test_deepspeed_config_rejects(ds, batch_size, grad_clip, world_size, key):
    with pytest.raises(ValueError, match=key):
        deepspeed_config(ds, batch_size, grad_clip, world_size)


def test_builder_rejects_mismatched_device_and_backend():
    with pytest.raises(ValueError, match="deepspeed.micro_batch_size"):
        ds_engine(tiny_gpt2(), batch_size=4, micro=3)
    with pytest.raises(ValueError, match="nccl"):
        build_actor_engine(
            tiny_gpt2(),
            DeepSpeedConfig(backend="nccl", micro_batch_size=2),
            lr=LR,
            batch_size=4,
            grad_clip=1.0,
        )
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="accelerator"):
            build_actor_engine(
                tiny_gpt2(),
                DeepSpeedConfig(micro_batch_size=2),
                lr=LR,
                batch_size=4,
                grad_clip=1.0,
                device="cuda",
            )


# ------------------------------------------------------------------------ arithmetic
def test_torch_engine_accumulation_averages_micro_batches():
    accumulating = torch_engine(tiny_gpt2(), batch_size=4, micro=2)
    full = torch_engine(tiny_gpt2(), batch_size=4, micro=4)
    assert accumulating.gradient_accumulation_steps == 2
    assert [accumulating.is_boundary()] == [False]
    assert optimizer_step(accumulating, batch(1), micro=2) == [False, True]
    assert optimizer_step(full, batch(1), micro=4) == [True]
    assert accumulating.global_steps == full.global_steps == 1
    assert accumulating.micro_steps == 2
    # Summed (not averaged) micro-batch gradients would be twice as large: a different norm.
    assert accumulating.get_grad_norm() == pytest.approx(full.get_grad_norm(), rel=1e-5)
    assert_close(weights(accumulating), weights(full), atol=1e-6)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_engine_matches_torch_engine(stage):
    reference = torch_engine(tiny_gpt2())
    engine = ds_engine(tiny_gpt2(), stage=stage)
    assert isinstance(engine, DeepSpeedActorEngine)
    assert engine.config["zero_optimization"]["stage"] == stage
    assert_close(weights(engine), weights(reference), atol=0)
    for seed in (1, 2):  # two optimizer steps, two micro-batches each
        assert optimizer_step(engine, batch(seed), micro=2) == [False, True]
        optimizer_step(reference, batch(seed), micro=2)
        assert engine.get_grad_norm() == pytest.approx(reference.get_grad_norm(), rel=1e-4)
        assert reference.get_grad_norm() > 0.5  # grad_clip 0.5 really clipped
    assert engine.global_steps == reference.global_steps == 2
    assert_close(weights(engine), weights(reference), atol=1e-5)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_a_schedule_on_the_base_optimizer_sets_every_stages_learning_rate(stage):
    """DeepSpeed's ZeRO optimizers are not torch optimizers (a LambdaLR refuses them):
    schedules drive `base_optimizer`, the client AdamW, whose groups' lr each stage applies.
    A factor of 0 must leave every weight in place, then a factor of 0.5 take the torch
    engine's step at half the rate."""
    reference, engine = torch_engine(tiny_gpt2()), ds_engine(tiny_gpt2(), stage=stage)
    factors = [0.0, 0.5]
    schedules = [torch.optim.lr_scheduler.LambdaLR(e.base_optimizer, lambda k: factors[min(k, 1)])
                 for e in (reference, engine)]
    start = weights(engine)
    for seed, _ in enumerate(factors, 1):
        for e, sched in zip((reference, engine), schedules, strict=True):
            optimizer_step(e, batch(seed), micro=2)
            sched.step()
        if seed == 1:
            assert_close(weights(engine), start, atol=0)  # lr 0: not a weight moved
    assert engine.base_optimizer.param_groups[0]["lr"] == pytest.approx(LR * 0.5)
    moved = max(float((weights(engine)[k] - start[k]).abs().max()) for k in start)
    assert moved > 1e-4
    assert_close(weights(engine), weights(reference), atol=1e-5)


def test_every_parameter_changes_after_one_step():
    model = tiny_gpt2()
    model.transformer.wpe.weight.requires_grad_(False)  # a frozen one must stay put
    engine = ds_engine(model)
    before = weights(engine)
    optimizer_step(engine, batch(1), micro=2)
    after = weights(engine)
    for name, param in engine.module.named_parameters():
        changed = not torch.equal(before[name], after[name])
        assert changed == param.requires_grad, name


def test_zero_grad_mid_group_drops_the_step():
    for engine in (torch_engine(tiny_gpt2()), ds_engine(tiny_gpt2())):
        before = weights(engine)
        engine.backward(loss_of(engine, batch(1)[:2]))
        engine.zero_grad()  # e.g. the next micro-batch's loss was not finite
        assert engine.step() is False
        assert engine.step() is False  # the boundary: nothing applied
        assert engine.global_steps == 0 and engine.micro_steps == 2
        assert_close(weights(engine), before, atol=0)
        assert optimizer_step(engine, batch(2), micro=2) == [False, True]  # next group is normal
        assert engine.global_steps == 1


def test_zero_grad_mid_group_under_zero2_is_refused():
    engine = ds_engine(tiny_gpt2(), stage=2)
    engine.zero_grad()  # nothing accumulated yet: fine
    engine.backward(loss_of(engine, batch(1)[:2]))
    with pytest.raises(RuntimeError, match="ZeRO stage 2"):
        engine.zero_grad()


@pytest.mark.parametrize("stage", [0, 2])
def test_bf16_runs_on_cpu(stage):
    """bf16 is meant for GPUs, but DeepSpeed 0.19's CPU accelerator runs it too: a smoke test."""
    reference = torch_engine(tiny_gpt2())
    ds = DeepSpeedConfig(zero_stage=stage, precision="bf16", micro_batch_size=2)
    engine = build_actor_engine(
        tiny_gpt2(), ds, lr=LR, batch_size=4, grad_clip=0.5, weight_decay=WD
    )
    assert next(engine.module.parameters()).dtype == torch.bfloat16
    for seed in (1, 2):
        assert optimizer_step(engine, batch(seed), micro=2) == [False, True]
        optimizer_step(reference, batch(seed), micro=2)
        assert engine.get_grad_norm() == pytest.approx(reference.get_grad_norm(), rel=0.05)
    # Two updates of ~lr each; bf16 rounds weights near 1.0 to multiples of 2**-8 ~ 0.004.
    assert_close(weights(engine), weights(reference), atol=1e-2)


def test_shipped_deepspeed_json_files_match_the_built_config():
    """configs/deepspeed/*.json are what archer builds for actor.batch_size 32 with
    deepspeed.micro_batch_size 8 and grad_clip 1; DeepSpeed derives train_batch_size (which
    depends on the rank count) from the micro-batch size and accumulation steps."""
    root = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
    for name, stage in (("zero2_bf16.json", 2), ("zero3_bf16.json", 3)):
        shipped = json.loads((root / name).read_text())
        built = deepspeed_config(
            DeepSpeedConfig(zero_stage=stage, precision="bf16", micro_batch_size=8), 32, 1.0
        )
        del built["train_batch_size"]
        assert shipped == built, name


# ------------------------------------------------------------------------ checkpoints
ENGINES = {
    "torch": torch_engine,
    "zero0": ds_engine,
    "zero2": lambda model: ds_engine(model, stage=2),
    "zero3": lambda model: ds_engine(model, stage=3),
}


@pytest.mark.parametrize("kind", ENGINES)
def test_checkpoint_round_trip_resumes_exactly(kind, tmp_path):
    make = ENGINES[kind]
    uninterrupted = make(tiny_gpt2())
    for seed in (1, 2, 3):
        optimizer_step(uninterrupted, batch(seed), micro=2)
    expected = weights(uninterrupted)

    engine = make(tiny_gpt2())
    optimizer_step(engine, batch(1), micro=2)
    saved_weights, saved_norm = weights(engine), engine.get_grad_norm()
    engine.save_checkpoint(tmp_path / "ckpt")
    engine.save_checkpoint(tmp_path / "ckpt")  # overwriting an existing checkpoint is fine
    assert json.loads((tmp_path / "ckpt" / META_FILE).read_text())["global_steps"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp dirs left behind

    resumed = [make(tiny_gpt2(seed=1))]  # a fresh engine: the usual way to resume
    if kind != "zero3":  # DeepSpeed cannot load into a ZeRO-3 engine that has saved
        optimizer_step(engine, batch(9), micro=2)  # a step that the load must undo
        resumed.append(engine)
    for target in resumed:
        target.load_checkpoint(tmp_path / "ckpt")
        assert target.global_steps == 1 and target.micro_steps == 2
        assert target.get_grad_norm() == saved_norm
        assert_close(weights(target), saved_weights, atol=0)
        for seed in (2, 3):
            optimizer_step(target, batch(seed), micro=2)
        assert target.global_steps == 3
        # Identical weights need identical Adam moments and step counts: optimizer state restored.
        assert_close(weights(target), expected, atol=0)


def test_save_mid_accumulation_is_refused(tmp_path):
    engine = torch_engine(tiny_gpt2())
    engine.backward(loss_of(engine, batch(1)[:2]))
    engine.step()
    with pytest.raises(RuntimeError, match="middle of a gradient accumulation"):
        engine.save_checkpoint(tmp_path / "ckpt")


def test_load_missing_or_corrupt_checkpoint_names_the_path(tmp_path):
    engine = torch_engine(tiny_gpt2())
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        engine.load_checkpoint(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=f"{empty}.*{META_FILE} is missing"):
        engine.load_checkpoint(empty)
    (empty / META_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"corrupt actor engine checkpoint at {empty}"):
        engine.load_checkpoint(empty)
    engine.save_checkpoint(tmp_path / "good")
    (tmp_path / "good" / "engine_state.pt").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=f"corrupt actor engine checkpoint at {tmp_path / 'good'}"):
        engine.load_checkpoint(tmp_path / "good")


def test_checkpoint_kind_and_stage_must_match(tmp_path):
    torch_side = torch_engine(tiny_gpt2())
    torch_side.save_checkpoint(tmp_path / "torch")
    zero0 = ds_engine(tiny_gpt2())
    with pytest.raises(ValueError, match="'torch' engine"):
        zero0.load_checkpoint(tmp_path / "torch")
    zero0.save_checkpoint(tmp_path / "zero0")
    with pytest.raises(ValueError, match="ZeRO stage 0"):
        ds_engine(tiny_gpt2(), stage=1).load_checkpoint(tmp_path / "zero0")


def test_interrupted_save_falls_back_to_previous_checkpoint(tmp_path):
    engine = torch_engine(tiny_gpt2())
    optimizer_step(engine, batch(1), micro=2)
    engine.save_checkpoint(tmp_path / "ckpt")
    saved = weights(engine)
    # A crash between the two renames leaves the old checkpoint under .ckpt.old, no ckpt.
    (tmp_path / "ckpt").rename(tmp_path / ".ckpt.old")
    fresh = torch_engine(tiny_gpt2(seed=1))
    fresh.load_checkpoint(tmp_path / "ckpt")
    assert fresh.global_steps == 1
    assert_close(weights(fresh), saved, atol=0)


def test_engines_copy_nothing_from_the_model_they_wrap():
    model = tiny_gpt2()
    engine = ds_engine(model)
    assert engine.module is model  # ZeRO 0-2: the trained module is the caller's model
    twin = copy.deepcopy(model)
    out = engine(input_ids=batch(1)[:2], attention_mask=torch.ones_like(batch(1)[:2]))
    torch.testing.assert_close(out.logits, twin(input_ids=batch(1)[:2]).logits)


def test_own_process_group_leaves_no_port_for_children():
    """Outside a launcher the one-process group binds a free port without exporting it: a
    child started later (a subprocess `archer train`) must not inherit a port already in use."""
    import subprocess
    import sys

    code = ("import os; os.environ.pop('MASTER_PORT', None)\n"
            "from archer.distributed.engine import ensure_process_group\n"
            "import torch.distributed as dist\n"
            "ensure_process_group('gloo')\n"
            "print(dist.get_rank(), dist.get_world_size(), os.environ.get('MASTER_PORT'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "1", "None"]


# ------------------------------------------------------------------------ weight export
@pytest.mark.parametrize("stage", [0, 3])
def test_bucketed_export_equals_the_whole_weights_and_respects_the_cap(stage):
    """The export after a step equals the gathered weights, whatever the bucket size; each
    bucket stays under its cap (or is one parameter); under ZeRO-3 sizes come from ds_numel
    (a partitioned parameter's numel() is 0: sized by it, every parameter would fit one
    bucket)."""
    engine = ds_engine(tiny_gpt2(), stage=stage)
    optimizer_step(engine, batch(0), micro=2)
    whole = weights(engine)
    sizes = {n: p.numel() * 4 for n, p in tiny_gpt2().named_parameters()}
    cap = 8_000  # bytes: the attention and MLP matrices (32 x 96 x 4 = 12 kB, ...) are over it
    for bucket_bytes in (cap, 10**12):
        buckets = list(engine.weight_buckets(bucket_bytes))
        got = {k: v for b in buckets for k, v in b.items()}
        assert_close({k: got[k].float() for k in whole}, whole, atol=0)
        for b in buckets:
            assert len(b) == 1 or sum(sizes.get(k, 0) for k in b) <= bucket_bytes
    if stage == 3:
        partitioned = next(iter(engine.module.parameters()))
        assert partitioned.numel() == 0 and partitioned.ds_numel > 0  # the trap being tested
    assert len(list(engine.weight_buckets(cap))) >= 5  # sized by numel() it would be one
    assert len([b for b in engine.weight_buckets(10**12) if b]) <= 2  # parameters (+ buffers)
