"""The episode store: FIFO by turns, seeded sampling of turns and episodes, task groups, and an
exact save/restore in the dataset file format."""

import gzip

import pytest

from archer.buffer.dataset import read_trajectories
from archer.buffer.store import EPISODES_FILE, EpisodeStore, StoreError
from archer.types import Trajectory, Turn


def episode(task, n_turns, version=0, error_at=None, terminated=True):
    turns = [Turn(f"{task} s{i}", f"a{i}", -1.0, terminated and i == n_turns - 1, False,
                  {"error": "boom"} if i == error_at else {}) for i in range(n_turns)]
    return Trajectory("env", task, turns, final_observation=f"{task} end", policy_version=version)


def test_evicts_whole_oldest_episodes_beyond_capacity_turns():
    store = EpisodeStore(capacity=5, seed=0)
    assert store.add([episode("a", 2), episode("b", 2)], iteration=0) == 4
    store.add([episode("c", 3)], iteration=1)  # 7 turns > 5: "a" goes, 5 remain
    assert [e.task_id for e in store.episodes()] == ["b", "c"] and len(store) == 5
    store.add([episode("d", 9)], iteration=2)  # the newest episode always stays
    assert [e.task_id for e in store.episodes()] == ["d"] and len(store) == 9
    s = store.stats(current_iteration=3)
    assert s["buffer/added_total"] == 16 and s["buffer/overwritten"] == 7
    assert s["buffer/age_iters_mean"] == 1.0


def test_transitions_next_observation_done_and_error_turns():
    store = EpisodeStore(None, seed=0)
    assert store.add([episode("a", 3, error_at=1)], iteration=4) == 2  # the error turn has no s'
    refs = store.turns()
    assert [r.t for r in refs] == [0, 2]
    first, last = refs[0].transition, refs[1].transition
    assert first.next_observation == "a s1" and not first.done and first.iteration == 4
    assert last.next_observation == "a end" and last.done


def test_sampling_is_seeded_uniform_and_restores_exactly(tmp_path):
    store = EpisodeStore(capacity=100, seed=3)
    store.add([episode(t, 4, version=v) for v, t in enumerate("abcde")], iteration=0)
    again = EpisodeStore(capacity=100, seed=3)
    again.add([episode(t, 4, version=v) for v, t in enumerate("abcde")], iteration=0)
    draw = [(r.episode.task_id, r.t) for r in store.sample_turns(400)]
    assert draw == [(r.episode.task_id, r.t) for r in again.sample_turns(400)]
    assert {t for t, _ in draw} == set("abcde") and {i for _, i in draw} == {0, 1, 2, 3}
    store.save(tmp_path / "s")
    loaded = EpisodeStore.load(tmp_path / "s")
    assert [(r.episode.task_id, r.t) for r in loaded.sample_turns(50)] == [
        (r.episode.task_id, r.t) for r in store.sample_turns(50)]
    assert loaded.stats(2) == store.stats(2)
    # the episodes file is a dataset: `archer sft --data` and data.path read it as it is
    assert [t.task_id for t in read_trajectories(tmp_path / "s" / EPISODES_FILE)] == list("abcde")


def test_groups_by_task_and_episode_sampling():
    store = EpisodeStore(None, seed=0)
    store.add([episode("a", 1), episode("b", 1), episode("a", 2)], iteration=0)
    groups = store.by_task()
    assert sorted(groups) == ["a", "b"] and [len(e.turns) for e in groups["a"]] == [1, 2]
    assert len(store.sample_episodes(7)) == 7


def test_bad_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="capacity"):
        EpisodeStore(0)
    with pytest.raises(TypeError, match="Trajectory"):
        EpisodeStore(None).add(["not an episode"], 0)
    with pytest.raises(ValueError, match="empty episode store"):
        EpisodeStore(None).sample_turns(1)
    with pytest.raises(StoreError, match="missing"):
        EpisodeStore.load(tmp_path / "nothing")
    store = EpisodeStore(None)
    store.add([episode("a", 2)], 0)
    store.save(tmp_path / "s")
    with gzip.open(tmp_path / "s" / EPISODES_FILE, "wt") as f:
        f.write("{not json\n")
    with pytest.raises(StoreError, match="not valid JSON"):
        EpisodeStore.load(tmp_path / "s")
    (tmp_path / "s" / "store.json").write_text("[]")
    with pytest.raises(StoreError, match="not an archer episode store"):
        EpisodeStore.load(tmp_path / "s")
