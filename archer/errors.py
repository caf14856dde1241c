"""Error types for bad user input, importable without loading torch or transformers."""


class PolicyLoadError(FileNotFoundError):
    """A policy directory that is missing or not a Hugging Face checkpoint."""
