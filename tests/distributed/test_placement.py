"""The learner group's placement on a Ray cluster of two nodes (`ray.cluster_utils.Cluster`:
two raylets on this machine, one CPU each): STRICT_SPREAD puts the two ranks on different
nodes, they rendezvous across them and train; STRICT_PACK cannot fit them on one node and
says so."""

import pytest
import ray
import user_envs  # noqa: F401
from ray.cluster_utils import Cluster
from test_archer import QUIET, coin_sft  # noqa: F401
from test_learner import context, group_overrides

from archer import loop
from archer.config import load_config
from archer.distributed.learner import LearnerGroup, PlacementError
from archer.distributed.rollout import _driver_import_paths


@pytest.fixture
def two_nodes():
    if ray.is_initialized():  # another module's instance
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": ":".join(_driver_import_paths())}})
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.distributed
def test_spread_ranks_train_on_two_nodes(tmp_path, coin_sft, two_nodes):  # noqa: F811
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    over = [*group_overrides(tmp_path, coin_sft, 2), "cluster.cpus_per_learner=1",
            "cluster.placement_strategy=STRICT_SPREAD", "train.iterations=2"]
    result = loop.run(load_config(overrides=over), **QUIET)
    last = result["history"][-1]
    assert last["learner/ranks"] == 2.0 and last["learner/nodes"] == 2.0
    assert "actor/loss" in last and "critic/loss" in last  # both phases ran across the nodes
    assert result["after"]["eval/return_greedy"] is not None


@pytest.mark.distributed
def test_pack_cannot_fit_two_one_cpu_ranks_on_one_cpu_nodes(tmp_path, coin_sft, two_nodes):  # noqa: F811
    over = [*group_overrides(tmp_path, coin_sft, 2), "cluster.cpus_per_learner=1",
            "cluster.placement_strategy=STRICT_PACK", "cluster.placement_timeout_s=3"]
    with pytest.raises(PlacementError, match=r"2 learner rank\(s\) of \{'CPU': 1.0\} each "
                                             r"\(STRICT_PACK\)"):
        LearnerGroup(load_config(overrides=over), context(tmp_path, coin_sft))
