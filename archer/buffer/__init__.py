"""Replay buffers and offline datasets."""

from archer.buffer.dataset import DatasetError, read_trajectories, write_trajectories
from archer.buffer.replay import BufferError, ReplayBuffer

__all__ = [
    "BufferError",
    "DatasetError",
    "ReplayBuffer",
    "read_trajectories",
    "write_trajectories",
]
