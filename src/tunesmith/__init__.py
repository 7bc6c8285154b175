"""tunesmith: fine-tune small LLMs and prove the result, from data to GGUF."""

__version__ = "0.1.0"

__all__ = ["Run", "__version__", "train"]


def train(config_or_path, overrides=None, **kwargs):
    """Run training from a config object or file (same behaviour as `tunesmith train`)."""
    from tunesmith.train.api import train as _train

    return _train(config_or_path, overrides=overrides, **kwargs)


def __getattr__(name: str):
    # Run is imported on first use, so `import tunesmith` (and `tunesmith --help`) stays instant.
    if name == "Run":
        from tunesmith.notebook import Run

        return Run
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
