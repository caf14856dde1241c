"""Distributed machinery: the only package that imports deepspeed or ray.

Importing `archer.distributed` pulls in neither: the engine imports deepspeed when a DeepSpeed
engine is built, and `archer.distributed.rollout` (imported on its own) brings in ray.
"""

from archer.distributed.engine import (
    ActorEngine,
    DeepSpeedActorEngine,
    TorchActorEngine,
    build_actor_engine,
    deepspeed_config,
    ensure_process_group,
)

__all__ = [
    "ActorEngine",
    "DeepSpeedActorEngine",
    "TorchActorEngine",
    "build_actor_engine",
    "deepspeed_config",
    "ensure_process_group",
]
