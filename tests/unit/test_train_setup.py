"""Run setup and safety rails: run directory rules, checkpoints, launch checks, OOM hints, NaN stop."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from tunesmith.checkpoint_files import write_checksums
from tunesmith.config import load_config
from tunesmith.config.smoke import smoke
from tunesmith.errors import ConfigError, TrainingError
from tunesmith.model.device import DevicePlan
from tunesmith.run_dir import RunDir
from tunesmith.train.callbacks import CheckpointCallback, truncate_metrics
from tunesmith.train.prepare import RunContext, open_run_dir
from tunesmith.train.trainer_setup import check_launch, common_training_kwargs, oom_hint, optimizer_name


def config_at(tmp_path, **sections):
    raw = {"run": {"name": "r", "output_dir": str(tmp_path)}, **sections}
    return load_config(data=raw)


def ctx_for(config, device="cpu", precision="fp32"):
    run = RunDir.of(f"{config.run.output_dir}/{config.run.name}")
    return RunContext(config, run, {"train": [], "val": [], "test": []}, "base", DevicePlan(device, precision))


def test_finished_run_is_refused_unless_overwrite_or_resume(tmp_path):
    config = config_at(tmp_path)
    run = open_run_dir(config, resume=False)
    run.config_file.write_text("x")
    run.final.mkdir()
    with pytest.raises(ConfigError, match="already holds a finished run") as err:
        open_run_dir(config, resume=False)
    assert "--resume" in str(err.value) and "run.overwrite" in str(err.value)
    assert open_run_dir(config, resume=True).final.exists()
    config.run.overwrite = True
    assert not open_run_dir(config, resume=False).final.exists()


def test_resume_without_a_run_says_so(tmp_path):
    with pytest.raises(ConfigError, match="holds no run to continue"):
        open_run_dir(config_at(tmp_path), resume=True)


def test_smoke_uses_its_own_directory_replaced_every_time(tmp_path):
    config = smoke(config_at(tmp_path))
    first = open_run_dir(config, resume=False)
    assert first.root.name == "r-smoke"
    first.final.mkdir()
    assert not open_run_dir(config, resume=False).final.exists()


def test_latest_checkpoint_skips_partial_ones(tmp_path):
    run = RunDir.of(tmp_path)
    for name, complete in (("step-2", True), ("step-10", True), ("step-12", False), ("checkpoint-14", True)):
        (run.checkpoints / name).mkdir(parents=True)
        if complete:
            (run.checkpoints / name / "trainer_state.json").write_text("{}")
            write_checksums(run.checkpoints / name)
    assert run.latest_checkpoint().name == "step-10"


def test_checkpoint_callback_renames_and_keeps_last_k(tmp_path):
    run = RunDir.of(tmp_path)
    callback = CheckpointCallback(run, keep=2)
    for step in (2, 4, 6):
        (run.checkpoints / f"checkpoint-{step}").mkdir(parents=True)
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        callback.on_save(SimpleNamespace(output_dir=str(run.checkpoints)), state, None)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["step-4", "step-6"]


def test_truncate_metrics_drops_steps_after_the_checkpoint(tmp_path):
    run = RunDir.of(tmp_path)
    run.metrics.write_text("".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in (1, 2, 3, 4)))
    truncate_metrics(run, 2)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_multi_process_launch_without_ddp_is_refused():
    with pytest.raises(TrainingError, match="every process would silently train its own copy"):
        check_launch(SimpleNamespace(world_size=1), launched=2)
    check_launch(SimpleNamespace(world_size=2), launched=2)
    check_launch(SimpleNamespace(world_size=1), launched=1)


def test_precision_and_defaults_by_device(tmp_path):
    config = config_at(tmp_path, train={"mode": "qlora"})
    cpu = common_training_kwargs(ctx_for(config))
    assert (cpu["bf16"], cpu["fp16"], cpu["use_cpu"], cpu["activation_checkpointing"], cpu["optim"]) == (
        False,
        False,
        True,
        False,
        "adamw_torch_fused",
    )
    gpu = ctx_for(config, "cuda", "bf16")
    kwargs = common_training_kwargs(gpu)
    assert kwargs["bf16"] and kwargs["activation_checkpointing"] and not kwargs["use_cpu"]
    assert optimizer_name(gpu) == "paged_adamw_8bit"
    lora = config_at(tmp_path, train={"mode": "lora"})
    assert optimizer_name(ctx_for(lora, "cuda", "bf16")) == "adamw_torch_fused"
    assert optimizer_name(ctx_for(lora, "mps", "fp32")) == "adamw_torch"


def test_seed_style_settings_reach_the_trainer(tmp_path):
    # What users copy from other scripts: absolute warm-up steps, a separate eval batch size, and
    # activation checkpointing on by default on a Mac (MPS) as on CUDA.
    plain = common_training_kwargs(ctx_for(config_at(tmp_path)))
    assert (plain["warmup_steps"], plain["per_device_eval_batch_size"]) == (0.03, 8)  # the ratio; the train batch
    config = config_at(tmp_path, train={"warmup_steps": 50, "batch_size": 4, "eval_batch_size": 16})
    kwargs = common_training_kwargs(ctx_for(config))
    assert kwargs["warmup_steps"] == 50 and isinstance(kwargs["warmup_steps"], int)  # int = steps in transformers 5
    assert (kwargs["per_device_train_batch_size"], kwargs["per_device_eval_batch_size"]) == (4, 16)
    assert common_training_kwargs(ctx_for(config, "mps", "fp32"))["activation_checkpointing"] is True
    assert common_training_kwargs(ctx_for(config))["activation_checkpointing"] is False  # CPU


def test_trainable_parameter_count_is_printed_and_recorded(tiny_qwen2, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from tunesmith.model.adapters import add_adapters
    from tunesmith.train.trainer_setup import report_trainable

    config = config_at(tmp_path, lora={"r": 4})
    ctx = ctx_for(config)
    ctx.run_dir.root.mkdir(parents=True, exist_ok=True)
    model = add_adapters(AutoModelForCausalLM.from_pretrained(tiny_qwen2), config, False)
    lora = sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    total = sum(p.numel() for p in model.parameters())
    counts = report_trainable(ctx, model)
    assert (counts["trainable"], counts["total"]) == (lora, total) and 0 < lora < total
    text = f"{lora:,} of {total:,} ({lora / total:.2%})"
    assert capsys.readouterr().out.strip() == f"trainable parameters: {text}"
    assert ctx.run_dir.read_manifest().trainable_parameters["text"] == text


def test_smoke_kwargs_use_smoke_steps_and_no_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # W&B without a key is refused before training (tunesmith/tracking.py)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    config = config_at(tmp_path, train={"smoke_steps": 3}, tracking={"report_to": ["tensorboard", "wandb"]})
    kwargs = common_training_kwargs(ctx_for(smoke(config)))
    assert (kwargs["max_steps"], kwargs["save_strategy"], kwargs["report_to"]) == (3, "no", "none")
    assert (kwargs["eval_strategy"], kwargs["logging_steps"]) == ("no", 1)
    plain = common_training_kwargs(ctx_for(config))
    assert (plain["max_steps"], plain["save_strategy"], plain["report_to"], plain["eval_strategy"]) == (
        -1,
        "steps",
        ["wandb"],
        "steps",
    )


def test_oom_hint_names_settings_that_fit(tmp_path):
    config = config_at(tmp_path, train={"batch_size": 8, "grad_accum": 2}, data={"max_length": 2048})
    hint = oom_hint(ctx_for(config, "cuda", "bf16"))
    assert (
        "train.batch_size=4 train.grad_accum=4" in hint
        and "data.max_length=1024" in hint
        and "train.mode=qlora" in hint
    )


class _FakeModel:
    def __init__(self):
        self.saved = 0

    def save_pretrained(self, folder):
        self.saved += 1
        folder.mkdir(parents=True)
        (folder / "weights").write_text(str(self.saved))


def test_best_model_and_early_stopping(tmp_path):
    from transformers import TrainerControl

    from tunesmith.train.callbacks import BestCallback

    run, model = RunDir.of(tmp_path), _FakeModel()
    callback, control = BestCallback(run, patience=2), TrainerControl()
    state = SimpleNamespace(is_world_process_zero=True, global_step=0, max_steps=100, log_history=[])
    for loss in (3.0, 2.0, 2.5, 2.6):
        state.global_step += 10
        callback.on_evaluate(None, state, control, metrics={"eval_loss": loss}, model=model)
        assert not control.should_training_stop or loss == 2.6
    assert control.should_training_stop and callback.best == 2.0
    assert (run.best / "weights").read_text() == "2" and not run.best.with_name("best.tmp").exists()
    restored = BestCallback(**callback.state()["args"])
    assert restored.run == run and restored.patience == 2
