import gzip
import json

import pytest

from archer.buffer.dataset import DatasetError, read_trajectories, write_trajectories
from archer.types import Trajectory, Turn


def make_traj(task="dog", rewards=(-1.0, 0.0)):
    turns = [
        Turn(f"obs{i}", f"act{i}", r, i == len(rewards) - 1, False, {"answer": "No."})
        for i, r in enumerate(rewards)
    ]
    return Trajectory("archer/TwentyQuestions-v0", task, turns, "final", True, "info_gain", 3)


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz"])
def test_round_trip_loses_nothing(tmp_path, name):
    trajs = [make_traj("dog"), make_traj("cat", (-1.0, -1.0, -1.0))]
    assert write_trajectories(trajs, tmp_path / name) == 2
    back = read_trajectories(tmp_path / name)
    assert back == trajs
    assert [t.episode_return for t in back] == [-1.0, -3.0]


def test_stored_fields(tmp_path):
    write_trajectories([make_traj()], tmp_path / "d.jsonl")
    record = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert record["return"] == -1.0 and record["length"] == 2 and record["task_id"] == "dog"
    assert set(record["turns"][0]) == {"observation", "action", "reward", "terminated", "truncated", "info", "logprobs", "action_ids"}
    assert record["tokenizer"] is None


def test_sampled_ids_round_trip_and_old_records_still_load(tmp_path):
    traj = make_traj()
    traj.tokenizer = "0123456789abcdef"
    traj.turns[0].action_ids, traj.turns[0].logprobs = [17, 4, 0], [-1.5, -0.25, -3.0]
    write_trajectories([traj], tmp_path / "d.jsonl")
    back = read_trajectories(tmp_path / "d.jsonl")[0]
    assert back == traj and back.turns[0].action_ids == [17, 4, 0]
    assert back.tokenizer == "0123456789abcdef" and back.turns[1].action_ids is None
    old = make_traj().to_dict()  # written before turns carried ids
    del old["tokenizer"]
    for turn in old["turns"]:
        del turn["action_ids"]
    (tmp_path / "old.jsonl").write_text(json.dumps(old) + "\n")
    loaded = read_trajectories(tmp_path / "old.jsonl")[0]
    assert loaded.tokenizer is None and all(t.action_ids is None for t in loaded.turns)


def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        read_trajectories(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DatasetError, match="no episodes"):
        read_trajectories(tmp_path / "empty.jsonl")
    good = json.dumps(make_traj().to_dict())
    (tmp_path / "corrupt.jsonl").write_text(good + "\n{not json\n")
    with pytest.raises(DatasetError, match="line 2: not valid JSON"):
        read_trajectories(tmp_path / "corrupt.jsonl")
    (tmp_path / "nokey.jsonl").write_text(json.dumps({"env_id": "x", "turns": []}) + "\n")
    with pytest.raises(DatasetError, match=r"line 1: missing key\(s\) \['task_id'\]"):
        read_trajectories(tmp_path / "nokey.jsonl")
    rec = make_traj().to_dict()
    del rec["turns"][1]["reward"]
    (tmp_path / "noreward.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(DatasetError, match="turn 1 lacks"):
        read_trajectories(tmp_path / "noreward.jsonl")
    rec = make_traj().to_dict()
    rec["return"] = 5.0
    (tmp_path / "badreturn.jsonl").write_text(json.dumps(rec) + "\n")
    with pytest.raises(DatasetError, match="stored return"):
        read_trajectories(tmp_path / "badreturn.jsonl")
    with gzip.open(tmp_path / "trunc.jsonl.gz", "wt") as f:
        f.write(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_trajectories(tmp_path / "trunc.jsonl.gz")


def test_return_complete_only_for_episodes_the_env_ended():
    assert make_traj().return_complete  # last turn terminated
    truncated = make_traj()
    truncated.turns[-1].terminated, truncated.turns[-1].truncated = False, True
    assert not truncated.return_complete
    raised = make_traj()
    raised.error = "RuntimeError: boom"
    assert not raised.return_complete
    assert not Trajectory("e", "t", []).return_complete
