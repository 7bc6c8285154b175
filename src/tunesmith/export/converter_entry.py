"""Subprocess entry for llama.cpp's converter scripts: `python converter_entry.py SCRIPT ARGS...`.

Runs SCRIPT as __main__ with llama.cpp's gguf-py and conversion/ first on the path (PYTHONPATH set by the
caller). When $TUNESMITH_GGUF_PRE is set, a BPE vocabulary the converter cannot identify by its hash of
known models (tunesmith's freshly trained tiny vocabularies) gets that pre-tokenizer name instead of an
error; every vocabulary the converter does know keeps the converter's own answer.
When $TUNESMITH_GGUF_SPACE_PREFIX is 0 or 1, the GGUF's tokenizer.ggml.add_space_prefix is that value: the
HF tokenizer a run trained with decides whether llama.cpp puts '▁' before text that follows a special token.
When $TUNESMITH_GGUF_ADD_BOS is 0 or 1, tokenizer.ggml.add_bos_token is that value: whether the HF tokenizer
puts BOS before a text (the converter leaves it out for some SentencePiece folders, and llama.cpp then adds BOS).
GPT-NeoX configs read through transformers 5 carry `rope_parameters.partial_rotary_factor` where this
converter reads `rotary_pct` (KeyError on every Pythia otherwise, measured with llama-cpp-python 0.3.36).
"""

import os
import runpy
import sys


def _name_unknown_pre_tokenizer(name: str) -> None:
    from conversion.base import TextModel

    known = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self, tokenizer):
        try:
            return known(self, tokenizer)
        except NotImplementedError:  # "BPE pre-tokenizer was not recognized"
            return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre


def _gpt_neox_rotary_pct() -> None:
    from conversion.base import ModelBase

    load = ModelBase.load_hparams

    def load_hparams(dir_model, is_mistral_format):
        config = load(dir_model, is_mistral_format)
        rope = config.get("rope_parameters") or {}
        if config.get("model_type") == "gpt_neox" and "rotary_pct" not in config and "partial_rotary_factor" in rope:
            config["rotary_pct"] = rope["partial_rotary_factor"]
        return config

    ModelBase.load_hparams = staticmethod(load_hparams)


def _space_prefix(value: bool) -> None:
    import gguf

    writer = gguf.GGUFWriter
    set_prefix, set_model = writer.add_add_space_prefix, writer.add_tokenizer_model

    def add_tokenizer_model(self, model):
        set_model(self, model)
        set_prefix(self, value)

    writer.add_tokenizer_model = add_tokenizer_model
    writer.add_add_space_prefix = lambda self, _converter_value: set_prefix(self, value)


def _add_bos(value: bool) -> None:
    import gguf

    writer = gguf.GGUFWriter
    set_bos, set_model = writer.add_add_bos_token, writer.add_tokenizer_model

    def add_tokenizer_model(self, model):
        set_model(self, model)
        set_bos(self, value)

    writer.add_tokenizer_model = add_tokenizer_model
    writer.add_add_bos_token = lambda self, _converter_value: None  # already written with HF's answer


if __name__ == "__main__":
    del sys.path[0]  # this file's folder: its gguf.py would shadow llama.cpp's gguf package
    script = sys.argv[1]
    _gpt_neox_rotary_pct()
    if os.environ.get("TUNESMITH_GGUF_PRE"):
        _name_unknown_pre_tokenizer(os.environ["TUNESMITH_GGUF_PRE"])
    if os.environ.get("TUNESMITH_GGUF_SPACE_PREFIX") in ("0", "1"):
        _space_prefix(os.environ["TUNESMITH_GGUF_SPACE_PREFIX"] == "1")
    if os.environ.get("TUNESMITH_GGUF_ADD_BOS") in ("0", "1"):
        _add_bos(os.environ["TUNESMITH_GGUF_ADD_BOS"] == "1")
    sys.argv = [script, *sys.argv[2:]]
    runpy.run_path(script, run_name="__main__")
