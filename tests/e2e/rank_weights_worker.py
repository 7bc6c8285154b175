"""Helper run by the multi-process tests (not a test file): train a config, save this rank's trained weights.

    python tests/e2e/rank_weights_worker.py CONFIG OUT_DIR [--plant no-sync]
    torchrun --nproc-per-node 2 tests/e2e/rank_weights_worker.py CONFIG OUT_DIR

Writes OUT_DIR/rank-<RANK>.safetensors with every trainable parameter as a whole tensor (an FSDP shard is
gathered first, a collective step every rank takes) and OUT_DIR/rank-<RANK>.json with how many parameters
the rank held as shards. `--plant no-sync` plants the bug the tests guard
against: DDP's gradient all-reduce replaced by a hook that keeps each rank's own gradient, so the ranks
train two independent copies.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch


def trained_weights(model) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor

    out = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            whole = param.full_tensor() if isinstance(param, DTensor) else param
            out[name] = whole.detach().float().cpu().contiguous()
    return out


def sharded_parameters(model) -> int:
    """How many parameters this rank holds as FSDP shards (DTensors): 0 under DDP or one process."""
    from torch.distributed.tensor import DTensor

    return sum(isinstance(p, DTensor) for p in model.parameters())


def plant_no_sync() -> None:
    """Every DDP model keeps each rank's local gradient instead of the all-reduced average."""
    from torch.nn.parallel import DistributedDataParallel

    def keep_local(state, bucket):
        done = torch.futures.Future()
        done.set_result(bucket.buffer())
        return done

    original = DistributedDataParallel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.register_comm_hook(None, keep_local)

    DistributedDataParallel.__init__ = init


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--plant", choices=["no-sync"])
    args = parser.parse_args()
    if args.plant == "no-sync":
        plant_no_sync()
    from safetensors.torch import save_file

    from tunesmith.train.api import train

    result = train(args.config)
    weights = trained_weights(result.model)
    out, rank = Path(args.out), os.environ.get("RANK", "0")
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / f"rank-{rank}.safetensors"))
    (out / f"rank-{rank}.json").write_text(json.dumps({"sharded_parameters": sharded_parameters(result.model)}))


if __name__ == "__main__":
    main()
