"""A data-parallel rank other than 0: `python -m factory.training.rank RANK WORLD ADDRESS HOME RUN new|resume`.

Rank 0 (the run's own process, factory.training.run) starts one of these per other rank. It rebuilds the run's
trainer from its saved config and the shared workspace, joins the process group and trains its share of every
batch; it writes nothing to the workspace (rank 0 keeps the checkpoints, events and catalog), and its output
(its traceback when it fails) goes to `runs/<run>/rank-N.log`.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from factory.catalog import Catalog
from factory.training import distributed
from factory.training.engine import StopRequested
from factory.training.run import _trainer_for, has_checkpoint
from factory.workspace import Workspace


def main(argv: list[str]) -> int:
    rank, world, address, home, run_id, mode = int(argv[0]), int(argv[1]), argv[2], argv[3], argv[4], argv[5]
    print(f"--- rank {rank} of {world}, run {run_id} ({mode}), pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')}",
          flush=True)
    try:
        _train(home, run_id, mode == "resume", lambda device: distributed.join(rank, world, address, device))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


def follow(home: str, run_id: str, on_event=None, stop=None) -> dict:
    """A rank other than 0 in a process group its launcher made (Ray Train's TorchTrainer): from the run's last
    checkpoint when it has one, as rank 0 (factory.training.run.run_job) decides alike."""
    _train(home, run_id, has_checkpoint(Workspace.open(home), run_id), lambda device: distributed.adopted(torch.distributed.get_world_size()))
    return {}


def _train(home: str, run_id: str, resume: bool, group_for) -> None:
    ws = Workspace.open(home)
    with Catalog(ws.catalog_location) as catalog:
        resolved = catalog.run(run_id)["config"]
        device = resolved.get("device", "auto")
        group = group_for(device)  # its GPU set before the model is built
        trainer = _trainer_for(ws, catalog, run_id, resolved, lambda event: None, None)[-1]
        trainer.group = group
        distributed.sync_batchnorm(trainer.model, device)
        group.ready()
        try:
            trainer.fit(resume=resume)
        except StopRequested:
            pass  # rank 0 was asked to stop, and every rank stopped at the same step


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
