"""Shared fixtures: offline mode, tiny local models built once per session, ../shared data paths."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tokenized-split cache of the test session, not the user's ~/.cache/tunesmith
os.environ.setdefault("TUNESMITH_CACHE", tempfile.mkdtemp(prefix="tunesmith-test-cache-"))
# llama.cpp's converter (fetched once from the llama-cpp-python sdist) is kept across sessions, as for a user
os.environ.setdefault("TUNESMITH_CONVERTER_CACHE", str(Path.home() / ".cache" / "tunesmith"))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
STORIES_DIR = SHARED_DATA / "models" / "stories260K"


def shared_path(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a reason when it is absent (a user's clone)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs ../shared/data/{'/'.join(parts)} (only present in the team's workspace)")
    return path


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory) -> Path:
    """A tiny random Qwen2 model + ChatML tokenizer, built once for the whole session."""
    from tunesmith.model.tiny import build_tiny_model

    return build_tiny_model("qwen2", tmp_path_factory.mktemp("tiny_qwen2"), seed=0)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random Llama model + ChatML tokenizer, built once for the whole session."""
    from tunesmith.model.tiny import build_tiny_model

    return build_tiny_model("llama", tmp_path_factory.mktemp("tiny_llama"), seed=0)


@pytest.fixture(scope="session")
def stories_gguf() -> Path:
    """The real pretrained stories260K GGUF (skips when ../shared is absent)."""
    return shared_path("models", "stories260K", "stories260K.gguf")
