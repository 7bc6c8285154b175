"""The typed config: the only schema. YAML/JSON files and `--set` overrides fill these fields.

Every field carries a one-line description (shown by `tunesmith config show`) and a default that suits a
0.5B-3B model on one GPU. Cross-field rules that exclude each other live in `model_validator`s and raise
`ValueError`s, which the loader turns into key-path messages.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FORMATS = (
    "auto",
    "messages",
    "sharegpt",
    "alpaca",
    "prompt_completion",
    "text",
    "template",
    "preference",
    "unpaired_preference",
)
METHODS = ("sft", "grpo", "dpo", "orpo", "kto", "simpo")
# TRL 1.16 DPOConfig.loss_type values ("sft" is left out: that is method sft).
DPO_LOSSES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
)
GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_0", "q4_k_m", "q4_0")


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RunConfig(Section):
    name: str = Field("tunesmith-run", description="Run name; the run directory is <output_dir>/<name>.")
    output_dir: str = Field("runs", description="Folder that holds run directories.")
    seed: int = Field(42, ge=0, description="Seed for data sampling, splits, initialisation and training.")
    overwrite: bool = Field(False, description="Allow reusing an existing run directory that holds a finished run.")


class TinyModelConfig(Section):
    layers: int = Field(2, ge=1, le=32, description="Transformer layers of a `tiny:` model.")
    hidden: int = Field(64, ge=16, le=4096, description="Hidden size of a `tiny:` model (multiple of heads).")
    heads: int = Field(4, ge=1, le=64, description="Attention heads of a `tiny:` model.")
    vocab_size: int = Field(1024, ge=300, le=65536, description="BPE vocabulary size of a `tiny:` model.")


class ModelConfig(Section):
    name_or_path: str = Field(
        "Qwen/Qwen2.5-0.5B-Instruct",
        description="Hub id, local folder, .gguf file, or tiny:qwen2 / tiny:llama (built from the run's text).",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    tokenizer: str | None = Field(
        None, description="Tokenizer folder or SentencePiece .model file when it differs from the model."
    )
    chat_template: str = Field(
        "auto",
        description="auto (the model's own, else chatml/simple), a built-in name (chatml, llama3, simple) or a .jinja file.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weight dtype when loading; auto picks by device (fp32 on CPU/MPS)."
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="Attention kernel; auto lets transformers choose (sdpa)."
    )
    trust_remote_code: bool = Field(False, description="Allow model code from the hub (only for models you trust).")
    tiny: TinyModelConfig = Field(default_factory=TinyModelConfig, description="Shape of a `tiny:` model.")


class PromptTemplate(Section):
    system: str | None = Field(None, description="System turn; format string over the row's columns.")
    user: str = Field(..., description="User turn; format string over the row's columns, e.g. 'Ask a question'.")
    assistant: str = Field(..., description="Assistant turn; format string, e.g. '{title} {questions}'.")


class SourceConfig(Section):
    path: str | None = Field(
        None, description="Local file or folder (.json/.jsonl/.csv/.tsv/.parquet/.txt) or hub dataset id."
    )
    name: str | None = Field(None, description="Hub dataset config name.")
    split: str = Field("train", description="Hub dataset split to read.")
    data_files: str | list[str] | None = Field(None, description="Files inside a hub dataset (or glob).")
    dataset_info: str | None = Field(
        None, description="LLaMA-Factory dataset_info.json to read this source's description from."
    )
    dataset: str | None = Field(None, description="Entry name inside dataset_info.json.")
    format: Literal[FORMATS] = Field("auto", description="Row format; auto detects and says why.")  # type: ignore[valid-type]
    columns: dict[str, str] = Field(
        default_factory=dict, description="Rename columns: {expected_name: column_in_file}."
    )
    template: PromptTemplate | None = Field(None, description="Turn templates for format: template.")
    weight: float = Field(
        1.0, gt=0, description="Mixing weight relative to the other sources (2.0 : 1.0 = twice as often)."
    )
    limit: int | None = Field(None, ge=1, description="Take the first N rows.")
    sample: int | None = Field(None, ge=1, description="Take N rows at random (seeded by run.seed).")
    system_prompt: str | None = Field(None, description="System prompt added to each conversation without one.")
    system_prompt_file: str | None = Field(None, description="File holding the system prompt.")
    use_as: Literal["split", "train", "val", "test"] = Field(
        "split", description="split: divide by data.split fractions; train/val/test: use whole as that split."
    )

    @model_validator(mode="after")
    def _exclusive(self) -> SourceConfig:
        if self.limit is not None and self.sample is not None:
            raise ValueError(
                "'limit' and 'sample' exclude each other: use limit for the first N rows, sample for N random rows"
            )
        if self.system_prompt is not None and self.system_prompt_file is not None:
            raise ValueError("'system_prompt' and 'system_prompt_file' exclude each other: give one")
        if self.path is None and self.dataset is None:
            raise ValueError("a source needs 'path' (file, folder or hub id) or 'dataset' (with dataset_info)")
        if self.dataset is not None and self.dataset_info is None:
            raise ValueError("'dataset' names an entry of a dataset_info.json: set 'dataset_info' too")
        if self.format == "template" and self.template is None:
            raise ValueError("format 'template' needs 'template: {user: ..., assistant: ...}'")
        return self


class SplitConfig(Section):
    val: float = Field(0.1, ge=0, lt=1, description="Share of rows held out for validation.")
    test: float = Field(0.05, ge=0, lt=1, description="Share of rows held out for the final test.")
    train_limit: int | None = Field(
        None, ge=1, description="Keep the first N training rows after splitting (--smoke sets it)."
    )
    val_limit: int | None = Field(None, ge=1, description="Keep the first N validation rows after splitting.")
    test_limit: int | None = Field(None, ge=1, description="Keep the first N test rows after splitting.")

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.val + self.test >= 1:
            raise ValueError(f"val + test = {self.val + self.test:g} leaves no training rows: keep the sum below 1")
        return self


class CleanConfig(Section):
    normalize_whitespace: bool = Field(False, description="Collapse runs of spaces/tabs and trim each turn.")
    strip_html: bool = Field(False, description="Remove HTML tags and unescape entities.")
    drop_regex: list[str] = Field(
        default_factory=list, description="Drop rows whose text matches any of these regexes."
    )
    keep_chars: str | None = Field(None, description=r"Keep only this character class, e.g. 'a-zA-Z0-9\s'.")
    min_chars: int | None = Field(None, ge=0, description="Drop rows with fewer characters.")
    max_chars: int | None = Field(None, ge=1, description="Drop rows with more characters.")
    dedup: bool = Field(True, description="Drop exact duplicate rows.")


class DataConfig(Section):
    sources: list[SourceConfig] = Field(default_factory=list, description="Where the rows come from (one or more).")
    split: SplitConfig = Field(default_factory=SplitConfig, description="Held-out fractions (seeded by run.seed).")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning applied before tokenizing.")
    max_length: int = Field(
        1024, ge=16, le=131072, description="Longest tokenized example; longer ones are cut per data.truncation."
    )
    truncation: Literal["right", "left", "drop"] = Field(
        "right",
        description="Examples over max_length: cut the end (right), cut the start, keeping the answer (left), or drop them.",
    )
    loss_on: Literal["assistant", "all", "last_assistant"] = Field(
        "assistant", description="Which tokens get loss: every assistant turn, all tokens, or the last assistant turn."
    )
    system_prompt: str | None = Field(None, description="System prompt for every source without its own.")
    num_proc: int | None = Field(None, ge=1, description="Tokenizer worker processes (default: by data size).")


class LoraConfig(Section):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: float = Field(32, gt=0, description="LoRA alpha (scale = alpha / r, or alpha / sqrt(r) with rslora).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA path.")
    target_modules: str | list[str] = Field(
        "all-linear", description="Modules to adapt: all-linear or a list of names."
    )
    use_dora: bool = Field(False, description="Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = Field(False, description="Rank-stabilised scaling alpha / sqrt(r).")
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full and saved (e.g. embed_tokens when tokens are added)."
    )


class QuantizationConfig(Section):
    bits: Literal[4] = Field(4, description="Weight bits for QLoRA (4).")
    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    double_quant: bool = Field(True, description="Quantise the quantisation constants too.")
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Dtype of the matmuls; auto: bf16 on GPUs that have it, else fp16 on GPU, fp32 on CPU."
    )


class RewardConfig(Section):
    name: str | None = Field(
        None, description="Built-in reward: format, numeric_match, json_valid, json_match, length, contains."
    )
    function: str | None = Field(None, description="Custom reward: path/to/file.py:function or module:function.")
    weight: float = Field(1.0, description="Weight of this reward in the total.")
    options: dict[str, Any] = Field(default_factory=dict, description="Keyword options passed to the reward.")

    @model_validator(mode="after")
    def _one(self) -> RewardConfig:
        if (self.name is None) == (self.function is None):
            raise ValueError(
                "a reward needs exactly one of 'name' (built-in) or 'function' (file.py:func or module:func)"
            )
        return self


class GRPOConfig(Section):
    rewards: list[RewardConfig] = Field(default_factory=list, description="Reward functions and their weights.")
    num_generations: int = Field(8, ge=2, description="Completions sampled per prompt (the group).")
    max_completion_length: int = Field(256, ge=1, description="Longest completion in tokens.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature for completions.")
    beta: float = Field(0.0, ge=0, description="KL weight; a reference model is kept only when > 0.")
    prompt_column: str = Field("question", description="Column holding the prompt (for non-conversation rows).")
    reference_column: str = Field("answer", description="Column the rewards compare against.")
    use_vllm: bool = Field(
        False,
        description="Generate completions with vLLM in the training process (TRL's colocate mode); CUDA with "
        "vllm installed. Off: transformers' generate.",
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="Share of the GPU's memory vLLM reserves for weights and KV cache (use_vllm)."
    )


class FSDPConfig(Section):
    sharding: Literal["full", "hybrid"] = Field(
        "full", description="full: shard over every process; hybrid: shard within a node, replicate across nodes."
    )
    cpu_offload: bool = Field(
        False, description="Keep sharded parameters and optimizer state in CPU memory between uses."
    )


class DeepSpeedConfig(Section):
    stage: Literal[2, 3] = Field(2, description="ZeRO stage: 2 shards gradients + optimizer state, 3 also the weights.")
    offload: bool = Field(False, description="Offload optimizer state (and at stage 3 the weights) to CPU memory.")


class PreferenceConfig(Section):
    beta: float | None = Field(
        None,
        gt=0,
        description="dpo/kto: how far the policy may move from the reference; orpo: weight of the odds-ratio term; "
        "simpo: reward scale. Default: 0.1, simpo 2.0.",
    )
    loss_type: Literal[DPO_LOSSES] = Field(
        "sigmoid", description="DPO loss (method dpo): sigmoid, ipo, hinge, robust, ... (TRL's)."
    )  # type: ignore[valid-type]
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Probability a pair's label is flipped (dpo loss robust / exo_pair)."
    )
    simpo_gamma: float = Field(0.5, ge=0, description="Target reward margin of SimPO.")
    desirable_weight: float = Field(1.0, gt=0, description="KTO weight of desirable (label true) rows.")
    undesirable_weight: float = Field(1.0, gt=0, description="KTO weight of undesirable (label false) rows.")
    precompute_reference: bool = Field(
        False,
        description="dpo/kto: compute the reference log-probs once before training, so no reference model stays in memory.",
    )

    def beta_for(self, method: str) -> float:
        """beta as set, else the method's usual default (SimPO's paper uses 2.0-2.5, the others 0.1)."""
        return self.beta if self.beta is not None else (2.0 if method == "simpo" else 0.1)


class TrainConfig(Section):
    mode: Literal["full", "lora", "qlora"] = Field(
        "lora", description="Full fine-tune, LoRA, or QLoRA (4-bit base + LoRA)."
    )
    epochs: float = Field(3, gt=0, description="Passes over the training split.")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (overrides epochs).")
    batch_size: int = Field(8, ge=1, description="Examples per device per step.")
    eval_batch_size: int | None = Field(
        None, ge=1, description="Examples per device per validation-loss step (default: batch_size)."
    )
    grad_accum: int = Field(4, ge=1, description="Gradient accumulation steps.")
    learning_rate: float = Field(2e-4, gt=0, lt=1, description="Peak learning rate.")
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    warmup_steps: int | None = Field(
        None, ge=0, description="Warm-up as a number of optimizer steps (replaces warmup_ratio when set)."
    )
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, description="Gradient clipping norm (0 disables).")
    optimizer: Literal["auto", "adamw_torch", "adamw_torch_fused", "paged_adamw_8bit", "adamw_8bit", "sgd"] = Field(
        "auto",
        description="Optimizer; auto: paged_adamw_8bit for QLoRA on CUDA, adamw_torch_fused on CPU and CUDA, "
        "adamw_torch on MPS.",
    )
    lean_memory: bool = Field(
        False,
        description="CPU on Linux: give freed tensor memory back to the OS at once, so the peak RSS is the live "
        "tensors that `tunesmith plan` predicts; steps ran 1.1-1.7x slower here (docs/plan.md). Off: glibc's heap "
        "keeps freed memory for reuse (peak RSS measured 3-74% above the plan's peak).",
    )
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the GPU has it, fp16 on older GPUs, fp32 on CPU and MPS."
    )
    activation_checkpointing: Literal["auto", "on", "off"] = Field(
        "auto", description="Recompute activations to save memory; auto: on for CUDA and MPS, off on CPU."
    )

    @field_validator("activation_checkpointing", mode="before")
    @classmethod
    def _on_off(cls, value):
        # YAML 1.1 reads a bare on/off (as in `--set train.activation_checkpointing=on`) as true/false
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    batching: Literal["auto", "padding_free", "padded"] = Field(
        "auto",
        description="How examples share a batch: padding_free (flattened, kept apart; auto) or padded to the longest.",
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = Field("auto", description="Device to train on.")
    distributed: Literal["auto", "ddp", "fsdp", "deepspeed"] = Field(
        "auto",
        description="With several processes (--processes N): auto/ddp replicate the model, fsdp or deepspeed shard it.",
    )
    fsdp: FSDPConfig = Field(default_factory=FSDPConfig, description="FSDP2 settings (train.distributed: fsdp).")
    deepspeed: DeepSpeedConfig = Field(
        default_factory=DeepSpeedConfig, description="DeepSpeed ZeRO settings (train.distributed: deepspeed)."
    )
    logging_steps: int = Field(10, ge=1, description="Log metrics every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate on the validation split every N steps (default: save_steps)."
    )
    save_steps: int = Field(500, ge=1, description="Write a checkpoint every N steps.")
    save_checkpoints: bool = Field(
        True, description="Write step-N checkpoints (what --resume continues from); --smoke turns them off."
    )
    eval_during_training: bool = Field(
        True, description="Evaluate every eval_steps while training (SFT evaluates once at the end either way)."
    )
    save_total_limit: int = Field(3, ge=1, description="Keep the last K checkpoints.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without a better validation loss."
    )
    init_from: str | None = Field(
        None, description="Start from this run directory's final adapter (e.g. GRPO after SFT)."
    )
    smoke_examples: int = Field(10, ge=1, description="Examples used by --smoke.")
    smoke_steps: int = Field(3, ge=1, description="Steps run by --smoke.")


class EvalConfig(Section):
    metrics: list[str] = Field(
        default_factory=lambda: ["loss"],
        description="loss, exact_match, rouge, json, numeric, bleu, or custom file.py:function / module:function.",
    )
    max_new_tokens: int = Field(256, ge=1, description="Longest generated answer.")
    temperature: float = Field(0.0, ge=0, description="0 for greedy decoding (comparable before/after).")
    repetition_penalty: float = Field(1.0, gt=0, description="Penalty for repeated tokens at generation.")
    batch_size: int = Field(8, ge=1, description="Prompts generated at once.")
    limit: int | None = Field(None, ge=1, description="Evaluate on the first N test examples.")
    compare_base: bool = Field(True, description="Also evaluate the base model on the same prompts.")
    reference_column: str | None = Field(
        None, description="Column with the reference answer (default: the last assistant turn)."
    )
    json_fields: list[str] | None = Field(
        None, description="Fields scored by the json metric (default: all in the reference)."
    )


class ExportConfig(Section):
    merged: bool = Field(True, description="Merge the adapter into the base and save safetensors.")
    gguf: list[Literal[GGUF_TYPES]] = Field(default_factory=lambda: ["q4_k_m"], description="GGUF types to write.")  # type: ignore[valid-type]
    adapter_gguf: bool = Field(
        False, description="Also write the base as GGUF + the LoRA as a GGUF and Modelfile.adapter (ADAPTER)."
    )
    verify: bool = Field(True, description="Prove each GGUF answers like the HF model in llama.cpp.")
    verify_prompts: int = Field(5, ge=1, description="Prompts from the test split used by the parity check.")
    verify_tokens: int = Field(32, ge=1, description="Greedy tokens compared per prompt.")
    ollama_name: str | None = Field(
        None, description="Model name in the printed `ollama create` command (default: run name)."
    )
    out_dir: str | None = Field(None, description="Where to write (default: <run_dir>/export).")


class TrackingConfig(Section):
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "none"]] = Field(
        default_factory=lambda: ["tensorboard"], description="Trackers; keys come from the environment only."
    )
    project: str | None = Field(None, description="W&B project / MLflow experiment name.")
    uri: str | None = Field(
        None, description="MLflow tracking URI, e.g. file:./mlruns or http://host:5000 (default: MLflow's own)."
    )
    on_error: Literal["stop", "continue"] = Field(
        "stop", description="A tracker that cannot start: stop before training, or continue without it (a warning)."
    )


class Config(BaseModel):
    """A whole tunesmith run."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    run: RunConfig = Field(default_factory=RunConfig, description="Name, output folder and seed.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Base model and tokenizer.")
    data: DataConfig = Field(default_factory=DataConfig, description="Sources, cleaning, split and tokenization.")
    method: Literal[METHODS] = Field(
        "sft", description="Training method: sft, grpo, or preference: dpo, orpo, simpo (pairs), kto (labels)."
    )  # type: ignore[valid-type]
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA adapter (train.mode lora/qlora).")
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig, description="4-bit base for QLoRA.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Optimisation and checkpoints.")
    grpo: GRPOConfig = Field(default_factory=GRPOConfig, description="GRPO settings (method: grpo).")
    preference: PreferenceConfig = Field(default_factory=PreferenceConfig, description="DPO/ORPO/KTO/SimPO settings.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation after training.")
    export: ExportConfig = Field(default_factory=ExportConfig, description="Merge, GGUF and Ollama export.")
    tracking: TrackingConfig = Field(default_factory=TrackingConfig, description="Experiment trackers.")

    @model_validator(mode="after")
    def _cross(self) -> Config:
        if self.method == "grpo" and not self.grpo.rewards:
            raise ValueError("method 'grpo' needs at least one reward under grpo.rewards")
        if self.preference.loss_type != "sigmoid" and self.method != "dpo":
            raise ValueError(
                f"preference.loss_type '{self.preference.loss_type}' is a DPO loss: set method: dpo, or drop loss_type"
            )
        if self.train.mode == "full" and self.lora.modules_to_save:
            raise ValueError(
                "lora.modules_to_save applies to lora/qlora; train.mode 'full' trains every module already"
            )
        if self.train.mode == "qlora" and self.model.name_or_path.endswith(".gguf"):
            raise ValueError(
                "qlora quantises a 16/32-bit base: a .gguf base cannot be used; use mode lora or the HF model"
            )
        return self
