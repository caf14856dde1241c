"""The seed plan: streams disjoint for every run seed, no collisions within a stream."""

import numpy as np
import pytest

from archer.rollout.seeds import STREAMS, episode_seed, episode_seeds


def test_streams_are_disjoint_and_collision_free():
    n = 10_000
    seen: dict[int, tuple[int, str]] = {}
    for run_seed in range(4):
        for stream in STREAMS:
            seeds = episode_seeds(run_seed, stream, n)
            assert len(set(seeds)) == n  # no two indices of a stream share a seed
            for s in seeds:
                assert seen.setdefault(s, (run_seed, stream)) == (run_seed, stream), s
    assert len(seen) == 4 * len(STREAMS) * n
    # Every plan seed is a valid numpy and torch seed, above the seeds a person types.
    assert min(seen) >= 2**60 and max(seen) < 2**62
    np.random.default_rng(max(seen))


def test_the_old_overlap_is_gone():
    """seed=1 once gave training seeds 1_000_003 + n and eval seeds 1_000_001 + i."""
    train = set(episode_seeds(1, "train", 1000))
    assert not train & set(episode_seeds(1, "eval", 1000))
    assert episode_seeds(1, "train", 3, start=5) == [episode_seed(1, "train", i) for i in (5, 6, 7)]


@pytest.mark.parametrize("args", [(0, "test", 0), (0, "train", -1), (0, "eval", 2**40)])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        episode_seed(*args)
