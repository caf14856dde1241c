"""Replay buffers and offline datasets."""

from archer.buffer.dataset import DatasetError, read_trajectories, write_trajectories

__all__ = ["DatasetError", "read_trajectories", "write_trajectories"]
