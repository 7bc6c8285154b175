"""tunesmith: fine-tune small LLMs and prove the result, from data to GGUF."""

__version__ = "0.1.0"

__all__ = ["__version__", "train"]


def train(config_or_path, overrides=None, **kwargs):
    """Run training from a config object or file (same behaviour as `tunesmith train`)."""
    from tunesmith.train.api import train as _train

    return _train(config_or_path, overrides=overrides, **kwargs)
