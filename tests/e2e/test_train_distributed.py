"""Two CPU processes (gloo) train the same model as one process with the same global batch.

DDP (train.distributed: ddp) and FSDP2 (fsdp) runs with 2 processes x 4 examples are compared with one process
x 8 examples: every trained weight must agree within TOLERANCE (absolute), and under DDP the two ranks must
hold bit-identical weights. A planted run without gradient synchronisation (each rank keeps its own gradient:
two independent copies) must fail the same check. A checkpoint written by the sharded run loads into one
process. A 2-"node" x 1-process launch over a localhost rendezvous trains one model.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tunesmith.data.synth import write_intent_dataset
from tunesmith.run_dir import RunDir

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("rank_weights_worker.py")
SRC = Path(__file__).resolve().parents[2] / "src"
# Largest |difference| allowed between any trained weight of a 2-process run and of the 1-process run after
# 4 AdamW steps at lr 1e-3 (each step moves a weight by up to ~1e-3; float32 reduction order differs).
TOLERANCE = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(tmp_path: Path, name: str, batch: int, distributed: str = "auto", save_steps: int = 100) -> Path:
    data = tmp_path / "d.jsonl"
    if not data.exists():
        write_intent_dataset(data, rows=120, seed=0)
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        f"run: {{name: {name}, output_dir: {tmp_path / 'runs'}}}\nmodel: {{name_or_path: 'tiny:qwen2'}}\n"
        f"data: {{sources: [{{path: {data}}}], max_length: 96, split: {{val: 0.0, test: 0.05}}}}\n"
        "lora: {dropout: 0.0}\n"  # dropout draws different masks per rank: the runs would differ by design
        f"train: {{mode: lora, max_steps: 4, batch_size: {batch}, grad_accum: 1, learning_rate: 1.0e-3, "
        f"lr_scheduler: constant, warmup_ratio: 0.0, logging_steps: 1, save_steps: {save_steps}, "
        f"device: cpu, distributed: {distributed}}}\n"
        "eval: {max_new_tokens: 8, limit: 2, metrics: [loss]}\nexport: {gguf: [f16], verify_prompts: 2, verify_tokens: 4}\n"
        "tracking: {report_to: [none]}\n"
    )
    return config


def env() -> dict:
    return dict(
        os.environ,
        PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        OMP_NUM_THREADS="1",
        TUNESMITH_NO_PROGRESS="1",
    )


def run_worker(config: Path, out: Path, processes: int, *extra: str) -> None:
    if processes == 1:
        cmd = [sys.executable, str(WORKER), str(config), str(out), *extra]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={processes}",
            f"--master-port={free_port()}",
            str(WORKER),
            str(config),
            str(out),
            *extra,
        ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env(), cwd=config.parent)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def rank_outputs(out: Path) -> tuple[list[dict], list[int]]:
    """Each rank's trained weights and how many parameters it held as FSDP shards."""
    weights = [load(out / f"rank-{r}.safetensors") for r in (0, 1)]
    shards = [json.loads((out / f"rank-{r}.json").read_text())["sharded_parameters"] for r in (0, 1)]
    return weights, shards


def load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a, "the runs trained different parameters"
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def check_same_training(ranks: list[dict], single: dict, identical_ranks: bool) -> None:
    """The proof: ranks agree (bit for bit under DDP) and match the 1-process run within TOLERANCE."""
    if identical_ranks:
        assert max_difference(ranks[0], ranks[1]) == 0.0, "the two ranks hold different weights"
    for weights in ranks:
        diff = max_difference(weights, single)
        assert diff <= TOLERANCE, f"a 2-process weight differs from the 1-process run by {diff:.3g} > {TOLERANCE}"


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("single")
    run_worker(write_config(tmp, "single", batch=8), tmp / "out", 1)
    weights = load(tmp / "out" / "rank-0.safetensors")
    start = _initial_lora_b(weights)
    assert start > 1e-4, "the reference run did not move its adapters"  # else equality would prove nothing
    return weights


def _initial_lora_b(weights: dict) -> float:
    """LoRA B starts at zero: its size after training shows how far training moved the weights."""
    return max(float(v.abs().max()) for k, v in weights.items() if "lora_B" in k)


def test_ddp_two_processes_match_one_process(tmp_path, single):
    run_worker(write_config(tmp_path, "ddp", batch=4, distributed="ddp"), tmp_path / "out", 2)
    ranks, shards = rank_outputs(tmp_path / "out")
    assert shards == [0, 0]  # DDP: every rank holds the whole model
    check_same_training(ranks, single, identical_ranks=True)


def test_planted_unsynchronised_ranks_fail_the_check(tmp_path, single):
    run_worker(write_config(tmp_path, "nosync", batch=4, distributed="ddp"), tmp_path / "out", 2, "--plant", "no-sync")
    ranks, _ = rank_outputs(tmp_path / "out")
    with pytest.raises(AssertionError):
        check_same_training(ranks, single, identical_ranks=True)
    with pytest.raises(AssertionError):  # even without the rank-equality part, each copy misses the reference
        check_same_training(ranks, single, identical_ranks=False)


def test_fsdp_two_processes_match_one_process_and_load_into_one(tmp_path, single):
    config = write_config(tmp_path, "fsdp", batch=4, distributed="fsdp", save_steps=2)
    run_worker(config, tmp_path / "out", 2)
    ranks, shards = rank_outputs(tmp_path / "out")
    assert min(shards) > 0, "FSDP was asked for but the model was not sharded (plain DDP ran)"
    check_same_training(ranks, single, identical_ranks=True)
    run = RunDir.of(tmp_path / "runs" / "fsdp")
    manifest = json.loads(run.manifest.read_text())
    assert (manifest["distributed"], manifest["processes"]) == ("fsdp", 2)
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["step-2", "step-4"]
    # final/ and step-4/ hold the gathered weights (not one rank's shard), loadable by one process
    assert max_difference(_adapter_as_trained(run.final, ranks[0]), ranks[0]) == 0.0
    assert max_difference(_adapter_as_trained(run.checkpoints / "step-4", ranks[0]), ranks[0]) == 0.0
    for command in (["eval", str(run.root)], ["export", str(run.root), "--gguf", "f16"]):
        done = subprocess.run(
            [sys.executable, "-m", "tunesmith.cli.main", *command],
            capture_output=True,
            text=True,
            timeout=300,
            env=env(),
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert (run.eval / "metrics.json").exists() and list(run.export.glob("*f16.gguf"))


def test_two_nodes_one_process_each_on_localhost(tmp_path):
    """`--nnodes 2` with a node-0 address: each command starts its node's process; they meet and train one model."""
    config = write_config(tmp_path, "nodes", batch=4, distributed="ddp")
    port = str(free_port())
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tunesmith.cli.main",
                "train",
                str(config),
                "--processes",
                "1",
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                port,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
            cwd=tmp_path,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (out, err) in zip(nodes, outputs):
        assert node.returncode == 0, out[-2000:] + err[-3000:]
    assert outputs[0][0].count("trained 4 steps") == 1 and "trained" not in outputs[1][0]  # one summary, node 0's
    run = RunDir.of(tmp_path / "runs" / "nodes")
    manifest = json.loads(run.manifest.read_text())
    assert (manifest["distributed"], manifest["processes"]) == ("ddp", 2)
    steps = [r for r in run.read_metrics() if "loss" in r]
    # each step took 4 examples on each of the 2 processes: an epoch is ceil(rows / 8) steps, not ceil(rows / 4)
    assert steps[-1]["epoch"] == pytest.approx(4 / math.ceil(manifest["data"]["train"]["rows"] / 8), abs=1e-3)
    assert (run.final / "adapter_model.safetensors").exists()


def _adapter_as_trained(folder: Path, like: dict) -> dict:
    """final/'s adapter tensors under the trained model's parameter names (peft drops '.default')."""
    saved = load(folder / "adapter_model.safetensors")
    return {name: saved[name.replace(".default", "")] for name in like}
