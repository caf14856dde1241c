"""Episode storage: the episode store of replay algorithms and the JSONL dataset files (one
format for both)."""

from archer.buffer.dataset import DatasetError, read_trajectories, write_trajectories
from archer.buffer.store import EpisodeStore, StoreError, TurnRef

__all__ = ["DatasetError", "EpisodeStore", "StoreError", "TurnRef", "read_trajectories",
           "write_trajectories"]
