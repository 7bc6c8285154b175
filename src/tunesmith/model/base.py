"""The base model a config names: resolved to a loadable path, loaded for training, and its tokenizer.

One function per job, shared by every training method and by `rewards dry-run`:
    base = resolve_base_model(config, run, train_rows)  # hub id / folder / .gguf; `tiny:` built into run/base_model
    tokenizer = tokenizer_for_run(config, base)          # train.init_from's tokenizer, else the base's
    model = load_base_model(config, base, plan)          # dtype by mode and device, 4-bit for QLoRA
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tunesmith.config.schema import Config
from tunesmith.data.clean import texts_of
from tunesmith.data.example import Example
from tunesmith.errors import ConfigError
from tunesmith.model.adapters import compute_dtype_for, quantization_config
from tunesmith.model.device import DevicePlan
from tunesmith.model.from_run import is_adapter, load_run_tokenizer, run_base_model_path
from tunesmith.model.load import TINY_PREFIX, is_tiny, load_model, tokenizer_for
from tunesmith.model.tiny import build_tiny_model
from tunesmith.run_dir import RunDir, is_main_process


def resolve_base_model(config: Config, run: RunDir, train_rows: list[Example]) -> str:
    """The loadable base: train.init_from's (its base under its adapter, or its full weights); else the model,
    where `tiny:` builds (once) into run/base_model from the training text."""
    if config.train.init_from:
        source = RunDir.of(config.train.init_from)
        source.require_finished()
        return run_base_model_path(source) if is_adapter(source.final) else str(source.final)
    name = config.model.name_or_path
    if not is_tiny(name):
        return name
    target = run.base_model
    if not is_main_process():  # the build is deterministic: other ranks make their own copy, no waiting on rank 0
        target = Path(tempfile.mkdtemp(prefix=f"tunesmith-rank{os.environ.get('RANK')}-")) / "base_model"
    if not (target / "config.json").exists():
        shape = config.model.tiny
        texts = ["\n".join(texts_of(row)) for row in train_rows]
        build_tiny_model(
            name[len(TINY_PREFIX) :],
            target,
            texts,
            shape.vocab_size,
            shape.layers,
            shape.hidden,
            shape.heads,
            config.run.seed,
        )
    return str(run.base_model) if is_main_process() else str(target)


def tokenizer_for_run(config: Config, base: str):
    """The tokenizer a run trains with: train.init_from's (with its chat template), else the base's."""
    if config.train.init_from:
        return load_run_tokenizer(RunDir.of(config.train.init_from))
    return tokenizer_for(config.model, base)


def load_base_model(config: Config, base: str, plan: DevicePlan):
    """The base model in the dtype the plan wants (4-bit NF4 for QLoRA), on the plan's device."""
    import torch

    dtype = torch.float32 if config.train.mode == "full" or plan.precision == "fp32" else plan.torch_dtype
    if config.model.dtype != "auto":
        dtype = getattr(torch, config.model.dtype)
    quant, device_map = None, None
    if config.train.mode == "qlora":
        if plan.device == "mps":
            raise ConfigError(
                "train.mode 'qlora' needs CUDA or a CPU: bitsandbytes has no 4-bit kernels for Apple's MPS",
                hint="on a Mac use train.mode: lora (fp32 by default), or train.device: cpu for QLoRA on the CPU",
            )
        quant = quantization_config(config, compute_dtype_for(config, plan.precision))
        device_map = {"": plan.device if plan.device != "cuda" else torch.cuda.current_device()}
    return load_model(
        base,
        dtype=dtype,
        revision=config.model.revision,
        trust_remote_code=config.model.trust_remote_code,
        attn_implementation=config.model.attn_implementation,
        quantization_config=quant,
        device_map=device_map,
    )
