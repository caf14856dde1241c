"""Error types for bad user input, importable without loading torch or transformers."""


class PolicyLoadError(FileNotFoundError):
    """A policy directory that is missing or not a Hugging Face checkpoint."""


class CheckpointError(FileNotFoundError):
    """A resume from a missing, incomplete or unreadable checkpoint."""


class NonFiniteError(RuntimeError):
    """Too many non-finite losses: the run stops rather than train on garbage."""
