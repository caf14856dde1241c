"""Replay buffers and offline datasets."""

from archer.buffer.dataset import DatasetError, read_trajectories, write_trajectories
from archer.buffer.replay import ReplayBuffer, ReplayBufferError

__all__ = [
    "ReplayBufferError",
    "DatasetError",
    "ReplayBuffer",
    "read_trajectories",
    "write_trajectories",
]
