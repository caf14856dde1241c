"""Error types for bad user input, importable without loading torch or transformers.

Every error archer raises for a user to act on subclasses `ArcherError`; the CLI prints those as
one line and exits 2 (`--debug` or ARCHER_DEBUG=1 shows the traceback). Anything else is a bug
and keeps its traceback.
"""


class ArcherError(Exception):
    """Base of the errors a user can fix (a bad key, a missing file, a broken env)."""


class PolicyLoadError(ArcherError, FileNotFoundError):
    """A policy directory that is missing or not a Hugging Face checkpoint."""


class CheckpointError(ArcherError, FileNotFoundError):
    """A resume from a missing, incomplete or unreadable checkpoint."""


class NonFiniteError(ArcherError, RuntimeError):
    """Too many non-finite losses: the run stops rather than train on garbage."""


class DistributedError(ArcherError, RuntimeError):
    """A distributed launch or component that failed or is not supported (docs/scaling.md)."""


class LearnerGroupError(DistributedError):
    """A learner rank died or hung: its group was stopped; the run resumes from its last
    checkpoint (automatically up to `cluster.max_learner_restarts` times)."""
