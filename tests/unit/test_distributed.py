"""train.distributed -> accelerate's engines: the TrainingArguments fields, the rules, and the launch commands."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tunesmith.config import load_config
from tunesmith.errors import ConfigError
from tunesmith.model.device import DevicePlan
from tunesmith.train.distributed import deepspeed_config, distributed_kwargs, strategy
from tunesmith.train.launch import Launch, accelerate_command, launch_commands, needs_launch, torchrun_command

CPU = DevicePlan("cpu", "fp32")
GPU = DevicePlan("cuda", "bf16")


def config(**train):
    return load_config(data={"train": train})


def test_one_process_trains_the_plain_model_whatever_is_asked():
    for choice in ("auto", "ddp", "fsdp", "deepspeed"):
        assert strategy(config(distributed=choice), world_size=1) == "none"
        assert distributed_kwargs(config(distributed=choice), GPU, ["X"], world_size=1) == {}
    assert strategy(config(), world_size=2) == "ddp"


def test_fsdp_maps_to_fsdp2_that_transformers_and_accelerate_accept(tmp_path):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers import TrainingArguments

    cfg = load_config(data={"train": {"distributed": "fsdp", "fsdp": {"cpu_offload": True}}})
    kwargs = distributed_kwargs(cfg, CPU, ["Qwen2DecoderLayer"], world_size=2)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **kwargs)
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)  # accelerate's own parser
    assert plugin.fsdp_version == 2
    assert plugin.transformer_cls_names_to_wrap == ["Qwen2DecoderLayer"]
    assert plugin.cpu_offload is not None and "FULL_STATE_DICT" in str(plugin.state_dict_type)


def test_hybrid_shard_needs_several_nodes(monkeypatch):
    cfg = load_config(data={"train": {"distributed": "fsdp", "fsdp": {"sharding": "hybrid"}}})
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="several nodes"):
        distributed_kwargs(cfg, GPU, ["X"], world_size=2)
    mesh = distributed_kwargs(cfg, GPU, ["X"], world_size=4)["parallelism_config"]
    assert (mesh.dp_replicate_size, mesh.dp_shard_size) == (2, 2)


@pytest.mark.parametrize("stage,offload", [(2, False), (2, True), (3, False), (3, True)])
def test_deepspeed_configs_pass_accelerates_parser(stage, offload):
    from accelerate.utils import DeepSpeedPlugin

    cfg = load_config(data={"train": {"distributed": "deepspeed", "deepspeed": {"stage": stage, "offload": offload}}})
    plugin = DeepSpeedPlugin(hf_ds_config=deepspeed_config(cfg))
    assert plugin.zero_stage == stage
    assert plugin.offload_optimizer_device == ("cpu" if offload else "none")
    assert plugin.offload_param_device == ("cpu" if offload and stage == 3 else "none")
    assert plugin.hf_ds_config.is_zero3() == (stage == 3)


def test_deepspeed_refused_on_cpu_and_mps():
    with pytest.raises(ConfigError, match="needs CUDA GPUs"):
        distributed_kwargs(config(distributed="deepspeed"), CPU, [], world_size=2)
    with pytest.raises(ConfigError, match="MPS"):
        distributed_kwargs(config(), DevicePlan("mps", "fp32"), [], world_size=2)


def test_sharded_qlora_needs_one_dtype_for_4bit_storage_and_other_weights():
    cfg = load_config(
        data={"train": {"mode": "qlora", "distributed": "fsdp"}, "quantization": {"compute_dtype": "float16"}}
    )
    with pytest.raises(ConfigError, match="must equal the dtype") as err:
        distributed_kwargs(cfg, GPU, ["X"], world_size=2)
    assert "quantization.compute_dtype: auto" in str(err.value)
    cfg.quantization.compute_dtype = "bfloat16"
    assert distributed_kwargs(cfg, GPU, ["X"], world_size=2)["fsdp"] is True


def test_sharded_qlora_keeps_one_dtype_where_peft_upcasts(tiny_qwen2):
    """prepare_model_for_kbit_training upcasts norms to fp32 (the mixed-dtype shard groups FSDP rejects);
    the sharded path skips it. The unsharded call is the planted bug and must show fp32 weights."""
    import torch

    from tunesmith.model.adapters import add_adapters
    from tunesmith.model.base import load_base_model

    cfg = load_config(
        data={
            "model": {"name_or_path": str(tiny_qwen2), "dtype": "bfloat16"},
            "train": {"mode": "qlora", "distributed": "fsdp", "device": "cpu"},
            "quantization": {"compute_dtype": "bfloat16"},
        }
    )

    def dtypes(sharded: bool) -> set:
        model = add_adapters(load_base_model(cfg, str(tiny_qwen2), CPU), cfg, sharded=sharded)
        return {p.dtype for n, p in model.named_parameters() if "lora_" not in n and p.is_floating_point()}

    assert dtypes(sharded=True) == {torch.bfloat16}
    assert torch.float32 in dtypes(sharded=False)


def test_launch_commands_for_each_node():
    launch = Launch(processes=4, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29600)
    cmd = torchrun_command(launch, ["c.yaml", "--set", "a=1"])
    assert cmd[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc-per-node=4" in cmd and "--nnodes=2" in cmd and "--node-rank=1" in cmd
    assert "--master-addr=10.0.0.1" in cmd and "--master-port=29600" in cmd
    assert cmd[-4:] == ["train", "c.yaml", "--set", "a=1"]
    line = accelerate_command(launch, ["c.yaml"])
    assert "--num_processes=8" in line and "--num_machines=2" in line and "--machine_rank=1" in line
    text = launch_commands(launch, ["c.yaml"])
    assert "# node 0 of 2" in text and "# node 1 of 2" in text and "--node-rank=0" in text


def test_needs_launch_only_outside_a_launched_process(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert not needs_launch(Launch())
    assert needs_launch(Launch(processes=2)) and needs_launch(Launch(nnodes=2))
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not needs_launch(Launch(processes=2))  # a started process trains; it does not start more


def test_bad_launch_options_exit_2_with_one_message(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {mode: lora}\n")
    done = subprocess.run(
        [sys.executable, "-m", "tunesmith.cli.main", "train", str(cfg), "--nnodes", "2", "--node-rank", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "--node-rank 2: must be 0..1" in done.stderr and "Traceback" not in done.stderr


def test_print_launch_shows_commands_without_training(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train: {mode: lora}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tunesmith.cli.main",
            "train",
            str(cfg),
            "--processes",
            "2",
            "--nnodes",
            "2",
            "--master-addr",
            "node0",
            "--print-launch",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("torchrun --nproc-per-node=2 --nnodes=2") == 2 and "--master-addr=node0" in done.stdout
