"""The exact-resume check shared by the online methods' tests."""

from archer import loop
from archer.config import load_config


def assert_resumes_exactly(tmp_path, overrides, prefixes):
    """3 iterations straight == 2, a checkpoint, then 1 resumed: the same last metrics under
    `prefixes` (the algorithm's state, the store, the RNGs and the optimizers come back).
    `overrides(out)` gives the run's config overrides for output directory `out`."""
    def run(out, iterations, resume=False):
        over = [*overrides(out), "train.save_every=1", f"train.iterations={iterations}"]
        if resume:
            over.append("train.resume=true")
        return loop.run(load_config(overrides=over), final_eval=False, progress=False,
                        log=lambda *_: None)["history"]

    straight = run(tmp_path / "a", 3)
    run(tmp_path / "b", 2)
    resumed = run(tmp_path / "b", 3, resume=True)
    assert [h["iteration"] for h in resumed] == [2.0]
    keys = [k for k in straight[-1] if k.startswith((*prefixes, "rollout/return"))]
    assert keys and {k: straight[-1][k] for k in keys} == {k: resumed[0][k] for k in keys}
