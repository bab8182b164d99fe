"""Data-parallel training with torch.distributed (`edgefactory train --devices N`): N processes on this machine,
one per device (NCCL on CUDA GPUs, gloo on the CPU), each training the same model on its share of every batch.

- The run's own process is rank 0; it starts ranks 1..N-1 (fresh `python -m factory.training.rank` processes)
  that rebuild the same trainer from the run's saved config and the shared workspace, then joins them.
- Each global batch (the run's `batch_size`) is drawn from a generator seeded alike on every rank, so all ranks
  see the same order; each takes its share (`Group.shard`: every N-th item, padded by repetition to equal shares,
  as torch's DistributedSampler pads), so the samples per epoch are those of one process.
- After each backward pass the gradients are averaged over the ranks (`Group.average_gradients`: one all-reduce
  of all of them, as DistributedDataParallel's buckets do), so every rank takes the same optimizer step and the
  weights stay equal; BatchNorm layers become SyncBatchNorm on GPUs (gloo has no SyncBatchNorm on the CPU: there
  each rank normalises its share, and the engine's exact BN re-estimation before validation still sees all).
- Rank 0 alone validates, writes checkpoints and events; the epoch's score and clock go out from it, and each
  step the ranks agree on stopping (stop asked, time budget spent), so early stopping and the budget hold as in
  one process.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.distributed as dist

from factory.errors import ConfigError, TrainingError

STEP_TIMEOUT = datetime.timedelta(minutes=5)  # joining, and each step's collectives: a dead rank fails the run soon
WAIT_TIMEOUT = datetime.timedelta(minutes=30)  # the ranks wait this long for rank 0's validation, and for each
# other to load the data and build the model before the first step
_ACTIVE = threading.Lock()  # one process group per process: one data-parallel run at a time in a process


@dataclass
class Group:
    rank: int = 0
    world: int = 1
    waits: object = None  # the process group with the long timeout (WAIT_TIMEOUT), for waits on other ranks' work

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, indices: list[int]) -> list[int]:
        """This rank's share of a global batch: every `world`-th item from its rank on, all shares as long as the
        longest (the first items repeated)."""
        if self.world == 1:
            return list(indices)
        padded = list(indices) + list(indices[:self.share(len(indices)) * self.world - len(indices)])
        return padded[self.rank::self.world]

    def share(self, size: int) -> int:
        """How many items of a global batch of `size` each rank takes."""
        return -(-size // self.world)

    def average_gradients(self, optimizer: torch.optim.Optimizer) -> None:
        """Every gradient averaged over the ranks, in one all-reduce."""
        if self.world == 1:
            return
        # a parameter without a gradient keeps none (the optimizer then leaves it alone, weight decay included):
        # which ones have none is the same on every rank, since each runs the same graph
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
            offset += n

    def agree(self, *values: float) -> list[float]:
        """Each value's largest over the ranks, on every rank (one all-reduce for all): a flag true anywhere, the
        latest clock."""
        if self.world == 1:
            return list(values)
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return t.tolist()

    def from_main(self, values: list[float]) -> list[float]:
        """Rank 0's `values` on every rank (the others wait for it: it may be validating)."""
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64)  # the waits group is gloo's: on the CPU
        dist.broadcast(t, src=0, group=self.waits)
        return t.tolist()

    def ready(self) -> None:
        """Wait until every rank has its trainer built (rank 0's clock starts after)."""
        if self.world > 1:
            dist.barrier(group=self.waits)


SINGLE = Group()


def _device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def check_devices(devices: int, device: str) -> None:
    """A clear error for a device count this machine cannot give."""
    if devices > 1 and device != "cpu" and torch.cuda.is_available() and torch.cuda.device_count() < devices:
        raise ConfigError(f"--devices {devices} asks for {devices} GPUs; this machine has {torch.cuda.device_count()}.",
                          fix=f"Use --devices {torch.cuda.device_count()}, or --device cpu for {devices} CPU processes.")
    if devices > (os.cpu_count() or 1) and (device == "cpu" or not torch.cuda.is_available()):
        raise ConfigError(f"--devices {devices} asks for {devices} CPU processes; this machine has "
                          f"{os.cpu_count()} cores.", fix=f"Use --devices {os.cpu_count()} or fewer.")


def backend(device: str) -> str:
    return "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, world: int, address: str, device: str) -> Group:
    """Join the process group as `rank` of `world` (`address`: the rank 0 rendezvous, tcp://host:port); each rank
    gets its share of this machine's cores (and GPU `rank` under NCCL)."""
    kind = backend(device)
    if kind == "nccl":
        torch.cuda.set_device(rank)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group(kind, init_method=address, rank=rank, world_size=world, timeout=STEP_TIMEOUT)
    return Group(rank, world, dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT))


def adopted(world: int) -> Group:
    """The process group a launcher made (Ray Train's TorchTrainer, torchrun) as this rank's Group; every rank calls
    this at the same point (it makes the group's gloo side channel together)."""
    if dist.get_world_size() != world:
        raise ConfigError(f"The run asks for {world} data-parallel processes, but its launcher started "
                          f"{dist.get_world_size()}.", fix="Start as many workers as --devices says.")
    return Group(dist.get_rank(), world, dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT))


@contextlib.contextmanager
def ranks(world: int, device: str, module: str, args: list[str], logs: Callable[[int], Path]) -> Iterator[Group]:
    """Rank 0's group: the one a launcher made when this process is in one (Ray Train), else one of `launched`
    processes."""
    if dist.is_initialized():
        yield adopted(world)
        return
    with launched(world, device, module, args, logs) as group:
        yield group


@contextlib.contextmanager
def launched(world: int, device: str, module: str, args: list[str], logs: Callable[[int], Path]) -> Iterator[Group]:
    """Rank 0 of a `world`-process group: starts `python -m module RANK WORLD ADDRESS *args` for ranks 1..world-1
    (fresh interpreters, as torchrun starts them: nothing of the caller's script is run again in them; their output
    is added to `logs(rank)`), joins the group and yields it; on exit leaves the group, waits for the ranks and
    says which one failed."""
    if not _ACTIVE.acquire(blocking=False):
        raise ConfigError("Another data-parallel run is training in this process (a process has one "
                          "torch.distributed group).", fix="Wait for it to end, or start this run from the CLI "
                                                           "(`edgefactory train ... --devices N`: a process of its own).")
    address = f"tcp://127.0.0.1:{_free_port()}"
    procs = []
    for rank in range(1, world):
        with open(logs(rank), "a", encoding="utf-8") as log:
            procs.append(subprocess.Popen([sys.executable, "-m", module, str(rank), str(world), address, *args],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
    threads = torch.get_num_threads()
    failed = False
    try:
        yield join(0, world, address, device)
    except BaseException as exc:
        failed = True
        dead = _ended(procs, 5)  # those that ended by themselves (rank 0's own error leaves the others waiting)
        if dead and isinstance(exc, RuntimeError):  # a collective broke because a rank died: say which
            said = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
            raise TrainingError(f"Data-parallel rank {dead[0][0]} stopped (exit code {dead[0][1]}) during training: "
                                f"{said}", fix=f"See {logs(dead[0][0])}; the last checkpoint is kept, so `edgefactory "
                                               "train --resume RUN` goes on from it.") from exc
        raise
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        torch.set_num_threads(threads)
        _stop(procs, 10 if failed else WAIT_TIMEOUT.total_seconds())
        _ACTIVE.release()
    bad = [(rank, p.returncode) for rank, p in enumerate(procs, 1) if p.returncode != 0]
    if bad:
        raise TrainingError(f"Data-parallel rank {bad[0][0]} exited with code {bad[0][1]}.",
                            fix=f"See {logs(bad[0][0])}; train again without --devices to rule the data out.")


def _ended(procs: list, within_s: float) -> list[tuple[int, int]]:
    """(rank, exit code) of the rank processes that have ended with an error, or do so within `within_s`."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        if any(p.poll() not in (None, 0) for p in procs):
            break
        time.sleep(0.1)
    return [(rank, p.poll()) for rank, p in enumerate(procs, 1) if p.poll() not in (None, 0)]


def _stop(procs: list, grace_s: float) -> None:
    """Wait up to `grace_s` for the rank processes to end (they end with the group), then kill what is left."""
    for p in procs:
        try:
            p.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def sync_batchnorm(model: torch.nn.Module, device: str) -> Callable[[], None]:
    """BatchNorm as SyncBatchNorm where the backend synchronises it (NCCL; unchanged under gloo), in place; returns
    what puts the original BatchNorm modules back (with the trained values), for after training."""
    if backend(device) != "nccl":
        return lambda: None
    originals = {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # children replaced in place; the parameters are shared

    def restore() -> None:
        for name, bn in originals.items():
            synced = model.get_submodule(name)
            bn.load_state_dict(synced.state_dict())
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, bn)
    return restore


def rank_log(run_dir: Path, rank: int) -> Path:
    """Where rank `rank` of a run writes its output (its traceback, when it fails)."""
    return run_dir / f"rank-{rank}.log"
