"""The inner loop of `steering_agent.training`: one epoch of truncated-BPTT updates, the
loss, the validation RMSE, the torchrun place of this process, and the settings that
make the loop fast without changing its maths (docs/performance.md, "Training").

What makes it fast (measured in docs/performance.md):
- the augmentation is batch-wide (`steering_agent.data.augment.augment`) and hands the
  network channels_last frames (oneDNN's convolutions run NHWC about 1.5x faster); the
  weights stay in PyTorch's default layout, so checkpoints are as before;
- the ELUs run in place (`fast_training_model`; a flag, no new weights);
- freed memory is kept by the C allocator for the next step (`keep_freed_memory`): a step
  allocates ~0.5 GB of activations, and a fresh mmap of each costs a page fault per 4 KiB;
- `precision="bf16"` (`resolve_precision`: the default on a CPU with native bf16) runs the
  encoder's convolutions and linear layer under bf16 autocast; the LSTM, the head and the
  loss stay fp32 and the weights (and their updates) are fp32 as before;
- the loss is summed on the device, read once per epoch (no per-step sync).
"""

from __future__ import annotations

import ctypes
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from steering_agent.common.cli_args import UsageError
from steering_agent.data.augment import CameraFaults, augment
from steering_agent.data.sequences import ChunkStream, PreparedEpisode
from steering_agent.policy.model import SteeringNet
from steering_agent.policy.preprocess import normalize

PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Dist:
    """This process's place in a torchrun job (rank 0 of 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module initialised the process group (and ends it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, batch: int) -> slice:
        """The block of the global batch's rows this rank trains on."""
        per = batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def dist_from_env(cfg: Any) -> Dist:
    """The torchrun job this process is part of (RANK/WORLD_SIZE set), its process group
    initialised (gloo for a CPU device, NCCL for CUDA, each rank on cuda:LOCAL_RANK);
    `Dist()` where the variables are unset. `cfg` is a `training.TrainConfig`.

    Raises:
        UsageError: --batch is not a multiple of the world size.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Dist()
    import torch.distributed as tdist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.batch % world:
        raise UsageError(
            f"--batch {cfg.batch} over {world} processes: pass a multiple of {world} "
            "(each process trains batch/world rows)"
        )
    cuda = str(cfg.device).startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    owns = not tdist.is_initialized()
    if owns:
        tdist.init_process_group("nccl" if cuda else "gloo")
    return Dist(rank, world, local, owns)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16 or AMX); without it
    bf16 is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and
                    torch.ops.mkldnn._is_mkldnn_bf16_supported())  # fmt: skip
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """ "auto" -> "bf16" on a CPU with native bf16 (`cpu_has_native_bf16`), else "fp32"
    (on CUDA too: pass "bf16" to ask for it there).

    Raises:
        UsageError: an unknown name, or "bf16" where the device has no native bf16.
    """
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision!r} is not one of {PRECISIONS}")
    dev = torch.device(device)
    if dev.type == "cpu":
        native = cpu_has_native_bf16()
    else:
        native = dev.type == "cuda" and torch.cuda.is_bf16_supported()
    if precision == "auto":
        return "bf16" if native and dev.type == "cpu" else "fp32"
    if precision == "bf16" and not native:
        raise UsageError(
            f"--precision bf16: {dev} has no native bf16 (a CPU needs AVX512-BF16 or "
            "AMX), where it is slower than fp32; pass --precision fp32"
        )
    return precision


_kept = False


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next allocation (no mmap per large
    block, no trimming of the heap) for the rest of this process; returns whether it took
    effect (glibc only). A training step allocates and frees ~0.5 GB of activations; with
    the default each large block is a fresh mmap whose first touch page-faults every
    4 KiB (about 70,000 faults and a fifth of a step's CPU time on a 2-core VM). The
    process's resident memory then stays at its peak, which a training process reaches
    every step anyway."""
    global _kept
    if _kept:
        return True
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    _kept = bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 40))
    return _kept


def fast_training_model(model: SteeringNet) -> SteeringNet:
    """`model` with its ELUs in place (a flag: the same weights and maths, a pass over
    each activation less); returns it."""
    for mod in model.modules():
        if isinstance(mod, nn.ELU):
            mod.inplace = True
    return model


@contextmanager
def encoder_autocast(model: nn.Module, precision: str, device: str | torch.device):
    """While the block runs, `model`'s encoder (a SteeringNet or its DDP wrapper) runs
    under `precision` autocast and hands fp32 features on; nothing changes for "fp32"."""
    if precision != "bf16":
        yield
        return
    enc = getattr(model, "module", model).encoder
    plain, kind = enc.forward, torch.device(device).type

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(kind, dtype=torch.bfloat16):
            return plain(x).float()

    enc.forward = forward
    try:
        yield
    finally:
        del enc.forward


def warmup_cosine(total_steps: int, warmup: float = 0.05):
    """LR factor per optimizer step; `total_steps` may grow on --resume with more epochs."""
    n_warm = max(1, int(warmup * total_steps))

    def factor(step: int) -> float:
        if step < n_warm:
            return (step + 1) / n_warm
        frac = min(1.0, (step - n_warm) / max(1, total_steps - n_warm))
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * frac))

    return factor


@torch.inference_mode()
def evaluate_rmse(model: SteeringNet, eps: list[PreparedEpisode], chunk: int = 256) -> float:
    """Steering RMSE over whole episodes, state carried from each episode's first frame
    (fp32, as the policy runs it)."""
    model.eval()
    device = next(model.parameters()).device
    se, n = 0.0, 0
    for ep in eps:
        state = None
        for s in range(0, len(ep.steer), chunk):
            x = normalize(torch.from_numpy(np.array(ep.frames[s : s + chunk])).to(device))[None]
            pred, state = model(x, state)
            y = torch.from_numpy(ep.steer[s : s + chunk]).to(device)
            se += float(((pred[0] - y) ** 2).sum())
            n += x.shape[1]
    return math.sqrt(se / max(n, 1))


def reset_rows(state, fresh: np.ndarray):
    """Detach the carried state (truncated BPTT) and zero it for rows starting an episode."""
    if state is None:
        return None
    keep = torch.from_numpy(~fresh).float()
    if isinstance(state, tuple):  # the LSTM's (h, c), each [layers, B, hidden]
        keep = keep.view(1, -1, 1).to(state[0].device)
        return tuple(s.detach() * keep for s in state)
    # a batch-first tensor (the frame-stack's buffer of past frames)
    return state.detach() * keep.view(-1, *([1] * (state.dim() - 1))).to(state.device)


def steering_loss(pred: torch.Tensor, y: torch.Tensor, delta_weight: float = 0.0) -> torch.Tensor:
    """MSE of the steering [B, T], plus `delta_weight` x the MSE of its change from frame to
    frame (within a chunk) against the label's change."""
    loss = nn.functional.mse_loss(pred, y)
    if delta_weight and pred.shape[1] > 1:
        loss = loss + delta_weight * nn.functional.mse_loss(pred.diff(dim=1), y.diff(dim=1))
    return loss


def train_epoch(
    model,
    opt,
    sched,
    stream: ChunkStream,
    cfg: Any,
    rng,
    bar=None,
    dist: Dist | None = None,
) -> float:
    """One epoch; returns the mean loss over the global batch (averaged over ranks).

    Every rank draws the augmentation of the whole global batch (the same random numbers
    one process draws) and trains on its block of rows (`Dist.rows`). `cfg` is a
    `training.TrainConfig` (its `precision` as `resolve_precision` reads it)."""
    dist = dist or Dist()
    model.train()
    state, n = None, 0
    total = torch.zeros((), dtype=torch.float64, device=cfg.device)
    rows = dist.rows(cfg.batch)
    precision = resolve_precision(getattr(cfg, "precision", "fp32"), cfg.device)
    faults = CameraFaults(cfg.batch, cfg.camera_faults_per_s, cfg.frame_dt_s,
                          cfg.preprocess.color, rng)  # fmt: skip
    with encoder_autocast(model, precision, cfg.device):
        for frames, steer, fresh in stream:
            frames = faults.apply(frames, fresh)
            x, y = augment(frames, steer, cfg, rng, channels_last=True)
            x, y, fresh = x[rows], y[rows], fresh[rows]
            x, y = x.to(cfg.device, non_blocking=True), y.to(cfg.device, non_blocking=True)
            state = reset_rows(state, fresh)
            pred, state = model(x, state)
            loss = steering_loss(pred, y, cfg.delta_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total += loss.detach()
            n += 1
            if bar is not None:
                bar.update(1)
                if n % 10 == 1:  # a read of the loss (a sync on a GPU) every 10 steps
                    bar.set_postfix(loss=f"{float(total) / n:.4f}")
    mean = float(total) / max(n, 1)
    if dist.world > 1:  # the ranks' means are over equal row counts: their mean is global
        import torch.distributed as tdist

        t = torch.tensor([mean], dtype=torch.float64)
        if str(cfg.device).startswith("cuda"):
            t = t.to(cfg.device)
        tdist.all_reduce(t)
        mean = float(t.item()) / dist.world
    return mean
