"""train.distributed -> the TrainingArguments fields that select accelerate's engine (DDP, FSDP2 or DeepSpeed).

tunesmith shards nothing itself: with several processes (`tunesmith train --processes N`, see train/launch.py)
the HF Trainer hands the model to accelerate, which wraps it in DDP (auto/ddp), FSDP2 (`fully_shard` per
decoder layer) or DeepSpeed ZeRO. With one process every choice trains the plain model.

Dtype rules that break sharded LoRA/QLoRA runs elsewhere, and what we do about them:
- FSDP shards each unit's parameters as one group, so 4-bit weights must be *stored* in the dtype of the
  other parameters (`bnb_4bit_quant_storage`): quantization.compute_dtype must equal the load dtype.
- peft's `prepare_model_for_kbit_training` upcasts norms and embeddings to fp32, which breaks that uniformity:
  sharded QLoRA skips it (as TRL does for sharded QLoRA) and only re-enables input gradients.
- LoRA adapters under mixed precision are upcast to fp32 by accelerate (`fsdp2_prepare_model`): nothing to do.
"""

from __future__ import annotations

import os

from tunesmith.config.schema import Config
from tunesmith.errors import ConfigError
from tunesmith.model.device import DevicePlan


def strategy(config: Config, world_size: int) -> str:
    """The engine this launch uses: none (one process), ddp, fsdp or deepspeed."""
    if world_size <= 1:
        return "none"
    choice = config.train.distributed
    return "ddp" if choice == "auto" else choice


def is_sharded(config: Config, world_size: int) -> bool:
    return strategy(config, world_size) in ("fsdp", "deepspeed")


def distributed_kwargs(config: Config, plan: DevicePlan, layer_classes: list[str], world_size: int) -> dict:
    """TrainingArguments fields for the chosen engine (empty for one process or DDP)."""
    engine = strategy(config, world_size)
    check_distributed(config, plan, engine)
    if engine == "fsdp":
        return fsdp_kwargs(config, layer_classes, world_size)
    if engine == "deepspeed":
        return {"deepspeed": deepspeed_config(config)}
    return {}


def check_distributed(config: Config, plan: DevicePlan, engine: str) -> None:
    """Refuse the combinations that fail later with a library traceback or a hang."""
    if engine == "none":
        return
    if plan.device == "mps":
        raise ConfigError(
            "several processes on a Mac: PyTorch has no multi-process backend for MPS", hint="train with one process"
        )
    if engine == "deepspeed":
        if plan.device != "cuda":
            raise ConfigError(
                "train.distributed 'deepspeed' needs CUDA GPUs (accelerate runs DeepSpeed only on GPUs)",
                hint="on CPU use train.distributed: ddp or fsdp",
            )
        _require_deepspeed()
    if config.train.mode == "qlora" and engine in ("fsdp", "deepspeed"):
        _check_quant_storage(config, plan)


def fsdp_kwargs(config: Config, layer_classes: list[str], world_size: int) -> dict:
    """FSDP2 through accelerate: one `fully_shard` unit per decoder layer, full state dict on save."""
    fsdp = config.train.fsdp
    kwargs: dict = {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": layer_classes,
            "reshard_after_forward": True,
            "cpu_offload": fsdp.cpu_offload,
            "state_dict_type": "FULL_STATE_DICT",  # checkpoints load into one process for eval and export
            "cpu_ram_efficient_loading": False,
        },
    }
    if fsdp.sharding == "hybrid":
        kwargs["parallelism_config"] = hybrid_mesh(world_size)
    return kwargs


def hybrid_mesh(world_size: int):
    """HSDP: shard inside a node (LOCAL_WORLD_SIZE processes), replicate across nodes."""
    from accelerate import ParallelismConfig

    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if local == world_size or world_size % local:
        raise ConfigError(
            f"train.fsdp.sharding 'hybrid' needs several nodes of equal size (world {world_size}, {local} per node)",
            hint="use sharding: full on one node",
        )
    return ParallelismConfig(dp_replicate_size=world_size // local, dp_shard_size=local)


def deepspeed_config(config: Config) -> dict:
    """A DeepSpeed ZeRO config; "auto" values are filled by transformers from the TrainingArguments."""
    ds = config.train.deepspeed
    zero: dict = {"stage": ds.stage, "overlap_comm": True, "contiguous_gradients": True}
    if ds.offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if ds.stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if ds.stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True  # final/ holds whole weights, not ZeRO shards
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto",
        "train_batch_size": "auto",
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
    }


def decoder_layer_classes(model) -> list[str]:
    """Class names of the model's repeated blocks (FSDP's wrapping units), e.g. ["Qwen2DecoderLayer"]."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return list(getattr(base, "_no_split_modules", None) or [])


def _check_quant_storage(config: Config, plan: DevicePlan) -> None:
    compute = config.quantization.compute_dtype
    load = (
        config.model.dtype
        if config.model.dtype != "auto"
        else {"bf16": "bfloat16", "fp16": "float16"}.get(plan.precision, "float32")
    )
    if compute != "auto" and compute != load:
        raise ConfigError(
            f"sharded QLoRA stores 4-bit weights as quantization.compute_dtype ({compute}), which must equal the dtype "
            f"of the other weights ({load}): FSDP/ZeRO-3 shard one dtype per group",
            hint=f"set quantization.compute_dtype: auto (or {load})",
        )


def _require_deepspeed() -> None:
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise ConfigError(
            "train.distributed 'deepspeed' needs the deepspeed package",
            hint="pip install deepspeed (on a CUDA machine)",
        ) from None


def full_state_dict(model) -> dict | None:
    """The whole weights of an FSDP2-sharded model on rank 0 (collective: call on every rank); None if not sharded."""
    from torch.distributed.tensor import DTensor

    if not any(isinstance(p, DTensor) for p in getattr(model, "parameters", list)()):
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def use_fsdp_on_cpu(trainer) -> None:
    """Let accelerate run FSDP2 on CPU processes (gloo), as it does on GPUs.

    accelerate 1.15 turns a FullyShardedDataParallelPlugin on only for GPU-like distributed types
    (AcceleratorState.__init__); on CPU (MULTI_CPU) it drops the plugin and silently trains DDP. FSDP2 itself
    runs on CPU over gloo, so we set the state accelerate would have set. No-op unless FSDP was asked for.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    args, state = trainer.args, trainer.accelerator.state
    if args.fsdp_plugin_args is None or getattr(state, "fsdp_plugin", None) is not None:
        return
    if getattr(state, "distributed_type", None) != DistributedType.MULTI_CPU:
        return
    state.fsdp_plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    state.distributed_type = DistributedType.FSDP
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    trainer.is_fsdp_enabled = True
