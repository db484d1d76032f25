"""Run under torchrun by test_fsdp.py: shards a tiny gpt, trains, reports and checkpoints.

Usage: torchrun --nproc_per_node N tests/engine/fsdp_worker.py OUT_DIR STEPS [LOAD_DIR] [--ac] [--bf16] [--offload]
Loads LOAD_DIR's shards if given, trains STEPS steps on a fixed global batch, evaluates
unevenly (rank r runs r + 1 batches) and saves; writes OUT_DIR/rank{r}.json (shard sizes,
losses, evaluation sums) and OUT_DIR/shards-0000000S/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from torchstyle.engine import fsdp
from torchstyle.models import create_model
from torchstyle.models.base import StepModule

GLOBAL_BATCH = 8


def batches(step: int, rank: int, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    data = torch.randint(256, (GLOBAL_BATCH, 17), generator=g)
    mine = data[rank::world]  # this rank's share of the global batch
    return mine[:, :-1], mine[:, 1:]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out, steps = Path(args[0]), int(args[1])
    load = Path(args[2]) if len(args) > 2 else None
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = create_model("gpt", context=16, dim=32, depth=2, num_heads=2)
    optimizers = model.configure_optimizers()
    step = StepModule(model)
    fsdp.shard_model(
        model,
        root=step,
        optimizers=optimizers.values(),
        amp="bf16" if "--bf16" in sys.argv else "off",
        cpu_offload="--offload" in sys.argv,
        activation_checkpointing="--ac" in sys.argv,
    )
    if load is not None:
        fsdp.load_shards(load, model, optimizers)
    losses = []
    for i in range(steps):
        for opt in optimizers.values():
            opt.zero_grad(set_to_none=True)
        loss = step(batches(i, rank, world), "model")["loss"]
        loss.backward()
        for opt in optimizers.values():
            opt.step()
        losses.append(loss.item())
    report = fsdp.shard_report(model, optimizers.values())
    # Uneven evaluation: rank r runs r + 1 forwards; gathered weights need no collective.
    with fsdp.gathered(step):
        evals = [
            model.evaluation_step(batches(100 + i, 0, 1))["loss"].sum().item()
            for i in range(rank + 1)
        ]
    name = fsdp.new_shard_name(out, steps) if rank == 0 else None
    names = [name]
    dist.broadcast_object_list(names, src=0)
    fsdp.save_shards(out, names[0], model, optimizers, is_main=rank == 0, barrier=dist.barrier)
    (out / f"rank{rank}.json").write_text(
        json.dumps({"report": report, "losses": losses, "evals": evals, "shards": names[0]})
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
