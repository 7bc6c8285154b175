"""train/lean_steps.py: the Trainer's FLOP count and gradient norm, with parameters listed once."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments

from tunesmith.model.load import load_model
from tunesmith.train.lean_steps import LeanSteps


class Lean(LeanSteps, Trainer):
    pass


def trainer_with_gradients(tiny_qwen2, tmp_path, cls):
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(load_model(str(tiny_qwen2)), lora)
    args = TrainingArguments(str(tmp_path), use_cpu=True, report_to="none", max_grad_norm=1e9)  # norm, no clipping
    trainer = cls(model=model, args=args)
    ids = torch.randint(0, 100, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    return trainer, {"input_ids": ids}


def test_flops_and_gradient_norm_equal_the_trainers(tiny_qwen2, tmp_path):
    lean, inputs = trainer_with_gradients(tiny_qwen2, tmp_path, Lean)
    plain, _ = trainer_with_gradients(tiny_qwen2, tmp_path, Trainer)
    assert lean.floating_point_ops(inputs) == plain.floating_point_ops(inputs) > 0
    assert lean.floating_point_ops(inputs) == plain.floating_point_ops(inputs)  # the cached count, second call
    norm = lean._clip_grad_norm(lean.model).item()
    assert norm > 0 and norm == pytest.approx(plain._clip_grad_norm(plain.model).item(), abs=1e-6)
    # planted: a cached list that misses one trained parameter gives another norm, and the check above sees it
    missing = [p for p in lean.model.parameters() if p.requires_grad][1:]
    lean._trained_parameters = (id(lean.model), missing)
    assert abs(lean._clip_grad_norm(lean.model).item() - norm) > 1e-3


def test_the_trainer_still_calls_the_overrides(tiny_qwen2, tmp_path):
    """A transformers upgrade that stops calling them would silently drop the saving: fail here instead."""
    assert callable(getattr(Trainer, "_clip_grad_norm", None)) and callable(Trainer.floating_point_ops)
    calls = []

    class Spy(Lean):
        def _clip_grad_norm(self, model):
            calls.append("clip")
            return super()._clip_grad_norm(model)

        def floating_point_ops(self, inputs):
            calls.append("flops")
            return super().floating_point_ops(inputs)

    trainer, inputs = trainer_with_gradients(tiny_qwen2, tmp_path, Spy)
    trainer.args.max_steps, trainer.args.max_grad_norm = 2, 1.0
    trainer.train_dataset = [{"input_ids": row, "labels": row} for row in inputs["input_ids"].tolist()] * 4
    trainer.train()
    assert calls.count("clip") == 2 and calls.count("flops") == 2
