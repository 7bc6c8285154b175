"""LoRA / DoRA / rsLoRA adapters and the 4-bit (QLoRA) base, built on peft and bitsandbytes."""

from __future__ import annotations

from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError
from tunesmith.model.dropout import FastDropout
from tunesmith.model.from_run import is_adapter
from tunesmith.model.fused_lora import use_fused_lora
from tunesmith.run_dir import RunDir


def quantization_config(config: Config, compute_dtype):
    """A BitsAndBytesConfig for QLoRA (4-bit NF4 by default; bitsandbytes >= 0.46 also runs it on CPU)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            "train.mode 'qlora' needs bitsandbytes", hint="pip install 'tunesmith[qlora]' or use train.mode: lora"
        ) from None
    from transformers import BitsAndBytesConfig

    q = config.quantization
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=q.quant_type,
        bnb_4bit_use_double_quant=q.double_quant,
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype,
    )


def compute_dtype_for(config: Config, precision: str):
    """The QLoRA matmul dtype: quantization.compute_dtype, else the training precision."""
    import torch

    name = config.quantization.compute_dtype
    if name == "auto":
        name = {"bf16": "bfloat16", "fp16": "float16"}.get(precision, "float32")
    return getattr(torch, name)


def lora_config(config: Config):
    """The peft LoraConfig from the `lora` section (all linear layers by default)."""
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        modules_to_save=lora.modules_to_save,
        bias="none",
        task_type="CAUSAL_LM",
    )


def add_adapters(model, config: Config, activation_checkpointing: bool = False, sharded: bool = False):
    """Wrap `model` for training: LoRA (lora/qlora) or all weights trainable (full).

    sharded (FSDP / ZeRO-3): skip prepare_model_for_kbit_training, whose fp32 upcast of norms and embeddings
    breaks the one-dtype-per-shard-group rule (train/distributed.py)."""
    mode = config.train.mode
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from peft import get_peft_model, prepare_model_for_kbit_training

    if mode == "qlora" and not sharded:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)
    try:
        model = get_peft_model(model, lora_config(config))
    except ValueError as exc:
        raise ConfigError(
            f"lora: {str(exc).splitlines()[0]}",
            hint="lora.target_modules: all-linear, or names such as [q_proj, v_proj] that the model has",
        ) from None
    return fast_adapters(model)


def trainable_model(model, config: Config, activation_checkpointing: bool = False, sharded: bool = False):
    """The loaded base ready to train: no KV cache, seeded new adapters (or all weights for full), or
    train.init_from's run continued. `sharded`: see add_adapters."""
    from transformers import set_seed

    model.config.use_cache = False  # the cache would join padding-free examples that must stay apart
    set_seed(config.run.seed)  # adapter initialisation
    if config.train.init_from:
        return continue_from_run(model, config, activation_checkpointing)
    model = add_adapters(model, config, activation_checkpointing, sharded=sharded)
    if activation_checkpointing and (config.train.mode == "lora" or sharded):
        model.enable_input_require_grads()  # checkpointed blocks need a grad-carrying input with frozen embeddings
    return model


def continue_from_run(model, config: Config, activation_checkpointing: bool = False):
    """Wrap `model` (train.init_from's base, see model/base.py resolve_base_model) to continue that run:
    its final adapter trainable again, or new adapters when it was a full fine-tune."""
    from peft import PeftModel

    source = RunDir.of(config.train.init_from)
    if not is_adapter(source.final):
        return add_adapters(model, config, activation_checkpointing)
    if config.train.mode == "full":
        raise ConfigError(
            f"train.init_from {source.root} holds a LoRA adapter; train.mode 'full' cannot continue it",
            hint="use train.mode lora or qlora",
        )
    return fast_adapters(PeftModel.from_pretrained(model, str(source.final), is_trainable=True))


def fast_adapters(model):
    """The CPU speed-ups of a LoRA model being trained: FastDropout masks and the fused adapter path (both
    exact; model/dropout.py, model/fused_lora.py)."""
    use_fast_dropout(model)
    use_fused_lora(model)
    return model


def use_fast_dropout(model) -> int:
    """Swap the LoRA layers' nn.Dropout modules for FastDropout; returns how many were swapped."""
    import torch

    swapped = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for name, layer in list(dropouts.items()):
                if isinstance(layer, torch.nn.Dropout) and layer.p > 0:
                    dropouts[name] = FastDropout(layer.p)
                    swapped += 1
    return swapped
