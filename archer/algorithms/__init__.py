"""One module per method: pure loss functions plus an `update` that owns the step.

Importing this package must not import ray or deepspeed (tests check it in a subprocess).
"""
