"""Assertions shared by the rollout tests (in-process and Ray collectors)."""

import numpy as np


def assert_same_episodes(a, b, exact_logprobs=True):
    """Same episodes, in order: ids, seeds, policy versions, tokenizers, text, sampled token
    ids, rewards and flags. Log-probs
    are equal exactly, or with `exact_logprobs=False` to float tolerance (a different batch
    padding, or torch on a different number of threads, changes the last bits)."""
    assert [(t.task_id, t.seed, t.policy_version, t.tokenizer) for t in a] == [
        (t.task_id, t.seed, t.policy_version, t.tokenizer) for t in b
    ]
    for x, y in zip(a, b, strict=True):
        assert (x.success, x.final_observation, x.error) == (
            y.success,
            y.final_observation,
            y.error,
        )
        assert [
            (u.observation, u.action, u.reward, u.terminated, u.truncated) for u in x.turns
        ] == [(u.observation, u.action, u.reward, u.terminated, u.truncated) for u in y.turns]
        for u, v in zip(x.turns, y.turns, strict=True):
            assert u.action_ids == v.action_ids
            if exact_logprobs:
                assert u.logprobs == v.logprobs
            else:
                np.testing.assert_allclose(u.logprobs, v.logprobs, rtol=0, atol=1e-4)
