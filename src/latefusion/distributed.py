"""Training on several processes with PyTorch's own engine: `torchrun` starts the processes and sets
RANK, WORLD_SIZE, LOCAL_RANK and the rendezvous address; `setup()` joins them (NCCL on GPUs, gloo on
CPU). Without torchrun there is one process and every helper here does nothing.

How a run is shared (the training loop in train.py calls these):
  * data: every process computes the same (seed, epoch) order; each global batch of
    `data.batch_size` samples (the number given, or what "auto" resolved to:
    engine.train_batch_size, which rounds it to a multiple of the process count) is cut into equal consecutive parts, one per process (`shard`), so the
    processes together train on exactly the batches one process would. Evaluation splits are dealt
    out sample by sample (`part`) and the counts summed (`sum_tensor`).
  * gradients: `wrap` puts the method's loss behind DistributedDataParallel, which averages the
    gradients across processes during `loss.backward()`. Methods keep receiving the plain model
    (they call `model.features`, `model.head`, `model.encoders[m]`), and a method that reshapes
    gradients after `loss.backward()` (OGM-GE, MLA, MMPareto) reshapes the averaged ones. What such
    a method computes from the batch itself is taken over the global batch (`mean_tensor`,
    `sum_tensor`), so every process decides the same and the model stays identical everywhere.
  * files and output: only the main process (rank 0) writes and shows progress.
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset

from .errors import ConfigError

_device = torch.device("cpu")  # where collective operations put their tensors (NCCL needs the GPU)


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    # Before `setup`, torchrun's RANK: the command line asks it to keep other processes quiet.
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the processes torchrun started (once per process) and return this process's device:
    under torchrun each process on a machine takes the GPU numbered by its LOCAL_RANK."""
    global _device
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(dist.destroy_process_group)
    if dist.is_initialized() and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    _device = device
    return device


def local_batch_size(batch_size: int) -> int:
    """Each process's share of a global batch of `batch_size` samples."""
    if batch_size % world_size():
        raise ConfigError(f"data.batch_size={batch_size} is the global batch and must split evenly across the {world_size()} "
                          f"processes; use a multiple of {world_size()}")
    return batch_size // world_size()


def shard(order: list[int], batch_size: int) -> list[int]:
    """This process's part of a training order: its equal, consecutive share of each global batch.
    The epoch's last, short batch is cut into equal shares too, leaving out its last
    (size mod world_size) samples, fewer than one per process, so that no process waits on another."""
    world = world_size()
    if world == 1:
        return order
    mine = []
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        share = len(batch) // world
        mine += batch[rank() * share:(rank() + 1) * share]
    return mine


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Training steps of an epoch of `samples`: one per global batch that gives every process a sample."""
    return samples // batch_size + (samples % batch_size >= world_size())


def part(dataset: Dataset) -> Dataset:
    """This process's samples of an evaluation split (every world_size-th one)."""
    return dataset if world_size() == 1 else Subset(dataset, range(rank(), len(dataset), world_size()))


def gather_parts(values: Tensor, n: int) -> Tensor:
    """Per-sample values computed by every process on its `part` of an n-sample split, put together in
    the split's order (sample i is the (i // world_size)-th of process i % world_size), on every process."""
    if world_size() == 1:
        return values
    longest = -(-n // world_size())
    padded = torch.zeros(longest, dtype=values.dtype, device=_device)
    padded[:len(values)] = values.to(_device)
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return torch.stack(parts, 1).flatten()[:n].to(values.device)


def _all_reduce(values: list[float], op=dist.ReduceOp.SUM) -> list[float]:
    if world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_device)
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()


def any_process(flag: bool) -> bool:
    """True on every process when it is true on one (a stop signal that reached one process first)."""
    return bool(_all_reduce([float(flag)], dist.ReduceOp.MAX)[0])


def mean_tensor(tensor: Tensor) -> Tensor:
    """A tensor computed from this process's share of the batch, averaged over the processes."""
    if world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= world_size()
    return tensor


def sum_tensor(tensor: Tensor) -> Tensor:
    """A tensor summed over the processes (a sum over the global batch from each process's share)."""
    if world_size() > 1:
        tensor = tensor.clone()
        dist.all_reduce(tensor)
    return tensor


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


class MethodStep(nn.Module):
    """A method's training loss as one module call. DistributedDataParallel synchronises the
    gradients of the module whose forward it runs, so the loss, not the model, is what it wraps: it
    then covers the model and the method's own parameters (UMT's projections, G-Blending's and
    MMPareto's heads), however the method reaches into the model."""

    def __init__(self, method: nn.Module, model: nn.Module) -> None:
        super().__init__()
        self.method, self.model = method, model

    def forward(self, inputs, labels, step):
        return self.method.loss(self.model, inputs, labels, step)


def wrap(method, model: nn.Module, device: torch.device) -> nn.Module:
    """`step_loss(inputs, labels, step) -> StepOutput`; behind DDP when there are several processes."""
    step = MethodStep(method, model)
    if world_size() == 1:
        return step
    return nn.parallel.DistributedDataParallel(
        step, device_ids=[device.index] if device.type == "cuda" else None,
        # MLA trains one modality per step: DDP must then look for the parameters a step left unused.
        find_unused_parameters=method.leaves_parameters_unused,
    )
