"""`tunesmith train CONFIG --processes N [--nnodes M --node-rank R --master-addr HOST]`: start the processes.

tunesmith does not shard or synchronise anything itself: it starts `torchrun` (torch.distributed.run), which
runs this same `tunesmith train` command once per process with RANK / WORLD_SIZE / MASTER_ADDR set; inside,
the HF Trainer hands the model to accelerate (DDP, FSDP2 or DeepSpeed, from train.distributed). A scheduler
that starts the processes itself (SLURM, Kubernetes) can run the printed `accelerate launch` command instead.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass

from tunesmith.errors import ConfigError

DEFAULT_PORT = 29500


@dataclass(frozen=True)
class Launch:
    """Where this command's processes run: N per node, M nodes, this node's rank, the rendezvous address."""

    processes: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = DEFAULT_PORT

    @property
    def world_size(self) -> int:
        return self.processes * self.nnodes

    def check(self) -> None:
        problems = []
        if self.processes < 1:
            problems.append(f"--processes {self.processes}: give 1 or more processes per node")
        if self.nnodes < 1:
            problems.append(f"--nnodes {self.nnodes}: give 1 or more nodes")
        if not 0 <= self.node_rank < max(1, self.nnodes):
            problems.append(f"--node-rank {self.node_rank}: must be 0..{self.nnodes - 1} for --nnodes {self.nnodes}")
        if self.nnodes > 1 and self.node_rank > 0 and self.master_addr in ("127.0.0.1", "localhost"):
            print("note: --master-addr is localhost: every node must reach node 0 at that address", file=sys.stderr)
        if problems:
            raise ConfigError(
                "bad launch options",
                problems=problems,
                hint="e.g. --processes 2, or --nnodes 2 --node-rank 0 --master-addr HOST",
            )


def needs_launch(launch: Launch) -> bool:
    """Whether to start processes: more than one asked for, and we are not already one of them."""
    return launch.world_size > 1 and "LOCAL_RANK" not in os.environ


def torchrun_command(launch: Launch, train_args: list[str]) -> list[str]:
    """The torchrun command line that runs `tunesmith train TRAIN_ARGS` in this node's processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={launch.processes}",
        f"--nnodes={launch.nnodes}",
        f"--node-rank={launch.node_rank}",
        f"--master-addr={launch.master_addr}",
        f"--master-port={launch.master_port}",
        "-m",
        "tunesmith.cli.main",
        "train",
        *train_args,
    ]


def accelerate_command(launch: Launch, train_args: list[str]) -> str:
    """The same launch as an `accelerate launch` line (one per node), for a scheduler's job script."""
    parts = [
        "accelerate",
        "launch",
        "--multi_gpu",
        f"--num_machines={launch.nnodes}",
        f"--num_processes={launch.world_size}",
        f"--machine_rank={launch.node_rank}",
        f"--main_process_ip={launch.master_addr}",
        f"--main_process_port={launch.master_port}",
        "-m",
        "tunesmith.cli.main",
        "train",
        *train_args,
    ]
    return shlex.join(parts)


def launch_commands(launch: Launch, train_args: list[str]) -> str:
    """Text that shows the torchrun and accelerate commands for every node of this launch."""
    lines = []
    for rank in range(launch.nnodes):
        node = Launch(launch.processes, launch.nnodes, rank, launch.master_addr, launch.master_port)
        torchrun = shlex.join(["torchrun", *torchrun_command(node, train_args)[3:]])
        lines += [f"# node {rank} of {launch.nnodes}", torchrun, f"# or: {accelerate_command(node, train_args)}"]
    return "\n".join(lines)


def run_launch(launch: Launch, train_args: list[str]) -> int:
    """Start this node's processes and wait for them; their exit code is ours."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(_threads_per_process(launch))))
    return subprocess.run(torchrun_command(launch, train_args), env=env).returncode


def _threads_per_process(launch: Launch) -> int:
    """CPU threads per process so N processes on one machine do not oversubscribe its cores."""
    return max(1, (os.cpu_count() or 1) // launch.processes)
