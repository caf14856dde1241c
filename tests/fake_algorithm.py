"""A 20-line Algorithm: the loop's contract with nothing else behind it (tests/test_loop.py)."""

import json

from archer.algorithms.api import Acting
from archer.models.policy import Policy


class Fake:
    data = "online"

    def __init__(self, policy, skipped=0.0):
        self.policy, self.skipped, self.version, self.seen = policy, skipped, 0, []

    def learn(self, new, iteration):
        self.seen.append((iteration, [t.seed for t in new]))
        self.version += 1
        return {"fake/episodes": float(len(new)), "fake/skipped": self.skipped}

    def acting(self):
        return Acting(policy=self.policy, version=self.version)

    def save(self, directory):
        self.policy.save_pretrained(directory / "policy")
        (directory / "fake.json").write_text(json.dumps({"version": self.version}))

    def load(self, directory):
        self.version = json.loads((directory / "fake.json").read_text())["version"]


def build(cfg, run):
    policy = Policy.from_pretrained(run.init_policy, reserve=cfg.generation.max_new_tokens)
    return Fake(policy, skipped=float(cfg.train.max_nonfinite == 1))
