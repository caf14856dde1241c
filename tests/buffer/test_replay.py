"""Replay buffer: ring order, uniform sampling, stats, save/load, and episode -> transitions."""

import gzip
import json
import math

import pytest

from archer.buffer import ReplayBuffer, ReplayBufferError
from archer.types import Trajectory, Transition, Turn, trajectory_transitions


def make(i: int, **kw) -> Transition:
    fields = dict(
        observation=f"s{i}",
        action=f"a{i}",
        reward=float(i),
        next_observation=f"s{i + 1}",
        done=i % 4 == 3,
        task_id=f"task{i % 3}",
        policy_version=i // 10,
        iteration=i // 5,
    )
    fields.update(kw)
    return Transition(**fields)


def test_ring_buffer_keeps_the_latest_capacity_items_in_order():
    buf = ReplayBuffer(capacity=5)
    buf.add([make(i) for i in range(3)])
    assert len(buf) == 3
    assert [t.observation for t in buf.transitions()] == ["s0", "s1", "s2"]
    buf.add([make(i) for i in range(3, 8)])
    assert len(buf) == 5
    assert [t.observation for t in buf.transitions()] == ["s3", "s4", "s5", "s6", "s7"]
    # slot order: item n sits at n % capacity
    assert [t.observation for t in buf._items] == ["s5", "s6", "s7", "s3", "s4"]
    buf.add([make(i) for i in range(8, 10)])  # exactly two full laps
    assert [t.observation for t in buf.transitions()] == [f"s{i}" for i in range(5, 10)]
    assert buf._items[0].observation == "s5"


def test_add_rejects_non_transitions_and_bad_capacity():
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity=0)
    with pytest.raises(TypeError, match="Transition"):
        ReplayBuffer(capacity=2).add([{"observation": "s"}])


def test_sample_empty_buffer_raises():
    buf = ReplayBuffer(capacity=3)
    with pytest.raises(ValueError, match="empty replay buffer"):
        buf.sample(1)
    buf.add([make(0)])
    assert buf.sample(0) == []
    with pytest.raises(ValueError, match=">= 0"):
        buf.sample(-1)


def test_sample_is_uniform_after_wrap_around():
    capacity, n = 50, 200_000
    buf = ReplayBuffer(capacity=capacity, seed=123)
    buf.add([make(i) for i in range(137)])  # wrapped twice, write position 37
    counts = {f"s{i}": 0 for i in range(137 - capacity, 137)}
    for t in buf.sample(n):
        counts[t.observation] += 1  # KeyError if an overwritten item came back
    expected = n / capacity  # 4000
    sigma = math.sqrt(n * (1 / capacity) * (1 - 1 / capacity))  # ~62.6
    assert all(abs(c - expected) < 5 * sigma for c in counts.values()), counts
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    # 99.9th percentile of chi-square with 49 degrees of freedom: 85.35. The seed is fixed, so
    # this is deterministic; a sampler biased by even 10% on a few slots fails it.
    assert chi2 < 85.35, chi2
    scipy_stats = pytest.importorskip("scipy.stats")
    assert scipy_stats.chi2.sf(chi2, df=capacity - 1) > 1e-3


def test_sample_is_reproducible_from_the_seed():
    a, b, c = ReplayBuffer(10, seed=7), ReplayBuffer(10, seed=7), ReplayBuffer(10, seed=8)
    for buf in (a, b, c):
        buf.add([make(i) for i in range(10)])
    assert a.sample(20) == b.sample(20)
    assert a.sample(20) != c.sample(20)


def test_stats_hand_checked():
    buf = ReplayBuffer(capacity=4)
    assert buf.stats() == {"buffer/size": 0.0, "buffer/added_total": 0.0, "buffer/overwritten": 0.0}
    buf.add(
        [
            make(0, done=False, policy_version=-1, iteration=-1),  # overwritten below
            make(1, done=True, policy_version=2, iteration=1),
            make(2, done=False, policy_version=3, iteration=2),
            make(3, done=True, policy_version=5, iteration=4),
            make(4, done=False, policy_version=4, iteration=4),
            make(5, done=False, policy_version=-1, iteration=-1),  # unknown: no age
        ]
    )
    # stored: items 2, 3, 4, 5
    s = buf.stats(current_iteration=6)
    assert s["buffer/size"] == 4
    assert s["buffer/added_total"] == 6
    assert s["buffer/overwritten"] == 2
    assert s["buffer/policy_version_min"] == -1
    assert s["buffer/policy_version_max"] == 5
    assert s["buffer/done_fraction"] == 0.25  # only item 3
    # ages of items 2, 3, 4: 6-2=4, 6-4=2, 6-4=2 -> mean 8/3, max 4
    assert s["buffer/age_iters_mean"] == pytest.approx(8 / 3)
    assert s["buffer/age_iters_max"] == 4
    assert "buffer/age_iters_mean" not in buf.stats()
    assert all(k.startswith("buffer/") for k in s)


def odd_transitions():
    """Transitions whose fields exercise JSON: unicode, line separators, newlines, NaN-free
    floats with many digits, negative versions."""
    return [
        make(0, observation="Q: is it \u00e9t\u00e9?\nA: Yes\u2028 \u2029 \r\n", reward=0.1 + 0.2),
        make(1, action='"quoted" \\ back', reward=-1e-300, task_id="\U0001f600"),
        make(2, reward=1 / 3, done=True, policy_version=-1, iteration=-1),
        make(3),
        make(4),
    ]


def test_save_load_round_trip_is_exact(tmp_path):
    buf = ReplayBuffer(capacity=4, seed=3)
    buf.add(odd_transitions())  # wrapped: item 4 sits in slot 0
    buf.sample(5)  # advance the RNG
    path = tmp_path / "sub" / "buffer.jsonl.gz"
    buf.save(path)
    assert not [p for p in path.parent.iterdir() if p != path]  # no temp file left behind
    loaded = ReplayBuffer.load(path)
    assert loaded.capacity == 4 and loaded.seed == 3
    assert loaded._items == buf._items  # same slots, all fields equal
    assert loaded.stats(5) == buf.stats(5)
    assert loaded.sample(50) == buf.sample(50)  # identical next samples
    loaded.add([make(9)])
    buf.add([make(9)])
    assert loaded._items == buf._items  # same write position
    with gzip.open(path, "rt", encoding="utf-8") as f:
        header = json.loads(f.readline())
    assert header["format"] == "archer-replay-buffer" and header["added_total"] == 5


def test_state_dict_round_trip_and_capacity_mismatch():
    buf = ReplayBuffer(capacity=6, seed=1)
    buf.add([make(i) for i in range(9)])
    state = buf.state_dict()
    expected = buf.sample(30)
    other = ReplayBuffer(capacity=6, seed=99)
    other.load_state_dict(state)
    assert other.transitions() == buf.transitions()
    assert other.sample(30) == expected
    with pytest.raises(ReplayBufferError, match="capacity"):
        ReplayBuffer(capacity=5).load_state_dict(state)


def test_empty_buffer_round_trip(tmp_path):
    ReplayBuffer(capacity=3, seed=5).save(tmp_path / "b.gz")
    loaded = ReplayBuffer.load(tmp_path / "b.gz")
    assert len(loaded) == 0 and loaded.capacity == 3


def test_missing_and_corrupt_files_raise_buffer_error_naming_the_path(tmp_path):
    missing = tmp_path / "nope.gz"
    with pytest.raises(ReplayBufferError, match="not found.*nope.gz"):
        ReplayBuffer.load(missing)

    not_gzip = tmp_path / "plain.gz"
    not_gzip.write_text("hello")
    with pytest.raises(ReplayBufferError, match="plain.gz"):
        ReplayBuffer.load(not_gzip)

    good = tmp_path / "good.gz"
    buf = ReplayBuffer(capacity=4)
    buf.add([make(i) for i in range(3)])
    buf.save(good)
    data = good.read_bytes()

    truncated = tmp_path / "truncated.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ReplayBufferError, match="truncated.gz"):
        ReplayBuffer.load(truncated)

    def write_lines(name, lines):
        p = tmp_path / name
        with gzip.open(p, "wt", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        return p

    with gzip.open(good, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    cases = {
        "empty.gz": ([], "empty"),
        "badjson.gz": ([lines[0], "{not json"], "line 2"),
        "missing_line.gz": (lines[:-1], "holds 2 transitions, expected 3"),
        "bad_field.gz": (
            [lines[0], lines[1], lines[2].replace('"reward"', '"rewrd"'), lines[3]],
            "keys",
        ),
        "bad_type.gz": (
            [lines[0], lines[1].replace('"done": false', '"done": 0'), *lines[2:]],
            "'done'",
        ),
        "bad_header.gz": (['{"format": "other"}', *lines[1:]], "format"),
        "bad_rng.gz": ([lines[0].replace('"PCG64"', '"Nope"'), *lines[1:]], "RNG"),
    }
    for name, (content, match) in cases.items():
        path = write_lines(name, content)
        with pytest.raises(ReplayBufferError, match=match) as info:
            ReplayBuffer.load(path)
        assert name in str(info.value)


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "buf.gz"
    buf = ReplayBuffer(capacity=2)
    buf.add([make(0)])
    buf.save(path)
    before = path.read_bytes()
    buf.add([make(1)])

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dumps", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        buf.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["buf.gz"]


# ------------------------------------------------------------ episodes -> transitions
def episode() -> Trajectory:
    return Trajectory(
        env_id="archer/Test-v0",
        task_id="cat",
        turns=[
            Turn("o0", "a0", -1.0, False, False),
            Turn("o1", "a1", -1.0, False, False, info={"error": "oracle crashed"}),
            Turn("o2", "a2", -1.0, False, False),
            Turn("o3", "a3", 0.0, False, True),  # cut by the time limit: bootstraps
        ],
        final_observation="o4",
        policy_version=7,
    )


def test_trajectory_transitions_next_obs_done_and_error_turns():
    ts = trajectory_transitions(episode(), iteration=3)
    assert [(t.observation, t.action, t.next_observation) for t in ts] == [
        ("o0", "a0", "o1"),  # s' of a turn is the next turn's observation ...
        ("o2", "a2", "o3"),  # ... the error turn (o1) is left out
        ("o3", "a3", "o4"),  # the last turn's s' is the final observation
    ]
    assert [t.done for t in ts] == [False, False, False]  # truncated is not done
    assert all(t.task_id == "cat" and t.policy_version == 7 and t.iteration == 3 for t in ts)

    won = Trajectory("e", "t", [Turn("o0", "a0", 1.0, True, False)], final_observation="end")
    (t,) = trajectory_transitions(won)
    assert t.done and t.next_observation == "end" and t.reward == 1.0
    assert t.policy_version == -1 and t.iteration == -1


def test_add_trajectories_counts_and_tags_iteration():
    buf = ReplayBuffer(capacity=100)
    assert buf.add_trajectories([episode(), episode()], iteration=2) == 6
    assert len(buf) == 6
    assert {t.iteration for t in buf.transitions()} == {2}
    assert buf.stats(current_iteration=5)["buffer/age_iters_max"] == 3
