"""Several processes under ``torchrun``: process-group set-up and the parallel strategies.

A strategy is how the model is spread over processes; the loop only calls the methods of
:class:`Strategy`, never branches on a name:

- ``none``: one process, the model as it is;
- ``ddp``: every process holds the whole model, gradients are averaged (all-reduce) after
  the last micro-batch of a step (``no_sync`` before it);
- ``fsdp``: FSDP2 ``fully_shard`` on every transformer block and on the root, so each
  process holds 1/world of the parameters, gradients and optimizer state; for models that
  do not fit one device. Checkpoints gather full (unsharded) state dicts on the CPU of
  the main process, so the files are the same as a single-process run's.

The backend is NCCL on GPUs and gloo on CPUs. Every process computes its data rows and
noise from the step number (:mod:`demask.training.order`), so nothing but gradients and
logged scalars crosses processes.

Not covered: tensor/pipeline/context parallelism, FSDP's own mixed-precision policy (bf16
runs use autocast on top of fp32 shards), sharded (distributed-checkpoint) files for
models whose full state does not fit the main process's CPU memory.
"""

from __future__ import annotations

import contextlib
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.distributed as dist
from torch import nn

from demask.registry import Registry

if TYPE_CHECKING:
    from torch.distributed.fsdp import FSDPModule
    from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: rank among world_size processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device(f"cuda:{local_rank}")
    return resolved


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK,
    MASTER_ADDR/PORT), or return a single-process DistInfo when not launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, resolved)
    return DistInfo(0, 1, 0, resolved)


def all_reduce_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``values`` over processes (a copy; the input is left alone)."""
    out = values.detach().clone()
    if info.world_size > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= info.world_size
    return out


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()


class Strategy(ABC):
    """How the model is placed on the processes. Methods marked collective must be called
    by every process."""

    name: str

    @abstractmethod
    def wrap(self, model: nn.Module, info: DistInfo) -> nn.Module:
        """The module the loop calls for the forward pass."""

    def sync_gradients(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Context of one micro-batch's backward; ``sync`` is False before the last one."""
        return contextlib.nullcontext()

    def clip_grad_norm(self, wrapped: nn.Module, max_norm: float | None) -> torch.Tensor:
        """Clip the global gradient norm and return it (before clipping). Collective."""
        norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), max_norm if max_norm else float("inf"))
        return _full(norm)

    def model_state(self, wrapped: nn.Module) -> dict[str, torch.Tensor]:
        """The full state dict on the CPU (complete on the main process). Collective."""
        return {k: v.detach().cpu() for k, v in self.unwrap(wrapped).state_dict().items()}

    def optimizer_state(self, wrapped: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's full state keyed by parameter name (complete on the main process),
        the same format for every strategy. Collective."""
        model = self.unwrap(wrapped)
        names = {id(p): n for n, p in model.named_parameters()}
        order = [names[id(p)] for g in optimizer.param_groups for p in g["params"]]
        raw = optimizer.state_dict()  # keyed by position in the param groups
        groups = [{**g, "params": [order[i] for i in g["params"]]} for g in raw["param_groups"]]
        return {"state": {order[i]: s for i, s in raw["state"].items()}, "param_groups": groups}

    def load_optimizer_state(self, wrapped: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a state written by :meth:`optimizer_state` (by any strategy)."""
        model = self.unwrap(wrapped)
        names = {id(p): n for n, p in model.named_parameters()}
        params = [p for g in optimizer.param_groups for p in g["params"]]
        index = {names[id(p)]: i for i, p in enumerate(params)}
        unknown = sorted(set(state["state"]) - set(index))
        if unknown:
            raise ValueError(f"the checkpoint's optimizer state has parameters this model lacks: {unknown[:5]}")
        groups = [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]]
        optimizer.load_state_dict({"state": {index[n]: s for n, s in state["state"].items()}, "param_groups": groups})

    def unwrap(self, wrapped: nn.Module) -> nn.Module:
        return wrapped


STRATEGIES: Registry[type[Strategy]] = Registry("distributed strategy", base=Strategy)


@STRATEGIES.register("none", "single")
class SingleProcess(Strategy):
    def wrap(self, model: nn.Module, info: DistInfo) -> nn.Module:
        if info.world_size > 1:
            raise ValueError(
                f"distributed='none' but {info.world_size} processes were launched; "
                "use ddp or fsdp (or launch one process)"
            )
        return model


@STRATEGIES.register("ddp")
class DataParallel(Strategy):
    def wrap(self, model: nn.Module, info: DistInfo) -> nn.Module:
        if info.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [info.device.index] if info.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sync_gradients(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        if sync or not hasattr(wrapped, "no_sync"):
            return contextlib.nullcontext()
        return cast("DistributedDataParallel", wrapped).no_sync()  # only DDP has no_sync

    def unwrap(self, wrapped: nn.Module) -> nn.Module:
        return getattr(wrapped, "module", wrapped)


@STRATEGIES.register("fsdp", "fsdp2")
class FullySharded(Strategy):
    """FSDP2: each transformer block is one shard unit (its all-gather overlaps compute),
    the root holds the embeddings, final norm and head."""

    def wrap(self, model: nn.Module, info: DistInfo) -> nn.Module:
        from torch.distributed.fsdp import fully_shard

        if not dist.is_initialized():
            raise ValueError("distributed='fsdp' needs a process group: launch with torchrun")
        for block in getattr(getattr(model, "model", model), "layers", []):
            fully_shard(block)
        fully_shard(model)
        return model

    def sync_gradients(self, wrapped: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return _requires_gradient_sync(wrapped, sync)

    def model_state(self, wrapped: nn.Module) -> dict[str, torch.Tensor]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return cast("dict[str, torch.Tensor]", state)  # full_state_dict: plain CPU tensors

    def optimizer_state(self, wrapped: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(
            wrapped, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )

    def load_optimizer_state(self, wrapped: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(
            wrapped, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True)
        )


@contextlib.contextmanager
def _requires_gradient_sync(wrapped: nn.Module, sync: bool) -> Iterator[None]:
    sharded = cast("FSDPModule", wrapped)  # FullySharded.wrap ran fully_shard on it
    sharded.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        sharded.set_requires_gradient_sync(True)


def _full(tensor: torch.Tensor) -> torch.Tensor:
    """A DTensor (FSDP2 gradient norm) as a plain tensor; plain tensors pass through."""
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def build_strategy(name: str, info: DistInfo) -> Strategy:
    """``auto`` is ddp with several processes and none with one."""
    if name == "auto":
        name = "ddp" if info.world_size > 1 else "none"
    return STRATEGIES.get(name)()
