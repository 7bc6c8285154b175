"""Parameter counts of a config's model without loading weights: the architecture is built on the meta device.

The model config comes from `config.json` (a folder or a cached hub id), a GGUF file's metadata, or the shape
of a `tiny:` model (`model.tiny`, with the vocabulary of the tokenizer the run would train). Only the config
is read; no weight file is opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tunesmith.errors import ModelError


@dataclass
class ModelShape:
    """What the memory and time formulas need to know about a model."""

    name: str
    params: int  # all parameters, tied embeddings counted once
    embedding: int  # input embedding table
    lm_head: int  # output layer; 0 when tied to the embedding
    linear_weights: int  # weights of the decoder layers' Linear modules (what LoRA adapts and QLoRA quantizes)
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    # (module name without the layer prefix, in_features, out_features) of every Linear in one decoder layer
    layer_linears: list[tuple[str, int, int]] = field(default_factory=list)
    model_type: str = ""  # transformers' model_type
    tensors: int = 0  # parameter tensors (the optimizer loops over them)
    checkpoint_bytes: int = 4  # bytes per weight in the checkpoint files (config dtype; tiny models save fp32)

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def other(self) -> int:
        """Parameters outside the embedding, output layer and Linear weights (norms, biases)."""
        return self.params - self.embedding - self.lm_head - self.linear_weights


def model_config(config, vocab_size: int | None = None):
    """The transformers config of the run's base model (read from files only)."""
    from tunesmith.model.load import is_tiny, split_gguf

    m = config.model
    if config.train.init_from:
        from tunesmith.model.from_run import is_adapter, run_base_model_path
        from tunesmith.run_dir import RunDir

        source = RunDir.of(config.train.init_from)
        return _auto_config(run_base_model_path(source) if is_adapter(source.final) else str(source.final), m)
    if is_tiny(m.name_or_path):
        from tunesmith.model.tiny import tiny_config

        arch = m.name_or_path.split(":", 1)[1]
        return tiny_config(arch, vocab_size or m.tiny.vocab_size, m.tiny.layers, m.tiny.hidden, m.tiny.heads)
    split_gguf(m.name_or_path)  # a missing .gguf is a clear error here
    return _auto_config(m.name_or_path, m)


def _auto_config(name_or_path: str, m):
    from transformers import AutoConfig

    from tunesmith.model.load import drop_invalid_pad_id, split_gguf

    folder, gguf_file = split_gguf(name_or_path)
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        config = AutoConfig.from_pretrained(
            folder, revision=m.revision, trust_remote_code=m.trust_remote_code, **kwargs
        )
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot read the config of '{name_or_path}': {str(exc).splitlines()[0]}",
            hint="give a local model folder, a .gguf file, a hub id cached for offline use, or tiny:qwen2",
        ) from None
    drop_invalid_pad_id(config)  # as loading the model does
    return config


def model_shape(hf_config, name: str) -> ModelShape:
    """Parameter counts by part, from the architecture built on the meta device (no memory, no weights)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is None or head.weight is embedding
    linears = _layer_linears(model)
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    layers = text.num_hidden_layers
    return ModelShape(
        name=name,
        params=sum(p.numel() for p in model.parameters()),
        embedding=embedding.numel(),
        lm_head=0 if tied else head.weight.numel(),
        linear_weights=layers * sum(i * o for _, i, o in linears),
        layers=layers,
        hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        vocab=embedding.shape[0],
        layer_linears=linears,
        model_type=getattr(text, "model_type", "") or "",
        tensors=sum(1 for _ in model.parameters()),
        checkpoint_bytes=_dtype_bytes(getattr(text, "dtype", None) or getattr(hf_config, "dtype", None)),
    )


def _dtype_bytes(dtype) -> int:
    """Bytes per weight of a config's dtype (a torch dtype or its name); fp32 when the config names none."""
    name = str(dtype or "float32").replace("torch.", "")
    return {"float16": 2, "bfloat16": 2, "float64": 8}.get(name, 4)


def _layer_linears(model) -> list[tuple[str, int, int]]:
    """The Linear modules of the first decoder layer (every layer of these models has the same ones)."""
    import torch

    prefix = None
    out = []
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        parts = name.split(".")
        digits = [i for i, p in enumerate(parts) if p.isdigit()]
        if not digits:  # lm_head and other modules outside the layer stack
            continue
        here = ".".join(parts[: digits[0] + 1])
        prefix = prefix or here
        if here == prefix:
            out.append((".".join(parts[digits[0] + 1 :]), module.in_features, module.out_features))
    return out


def lora_params(shape: ModelShape, r: int, target_modules, use_dora: bool = False) -> int:
    """Adapter parameters: r x (in + out) per adapted Linear (DoRA adds a magnitude per output)."""
    total = 0
    for name, n_in, n_out in shape.layer_linears:
        if targeted(name, target_modules):
            total += r * (n_in + n_out) + (n_out if use_dora else 0)
    return total * shape.layers


def targeted(name: str, target_modules) -> bool:
    """peft's rule: 'all-linear' is every Linear but the output layer; a list matches module-name suffixes."""
    if target_modules == "all-linear":
        return True
    targets = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    last = name.split(".")[-1]
    return any(last == t or name.endswith("." + t) or name == t for t in targets)
