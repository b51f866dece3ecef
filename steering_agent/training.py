"""Training: fit a CNN+LSTM (or the CNN baseline) to recorded expert drives (the command
is `steering-agent train`, steering_agent.train).

Frames are preprocessed once up front into uint8. Each batch row walks one episode
chunk after chunk (truncated backpropagation through time): the LSTM state is carried,
detached, from one chunk to the next and zeroed when the row starts a new episode.
Validation RMSE is measured on held-out episodes (episode-level split) every epoch,
each run from its first frame with the state carried, as the policy runs it.

Augmentation keeps labels honest: brightness/contrast/noise change no label; a
horizontal image shift of `dx` pixels (constant over a chunk) looks like the camera
yawed by `dx * fov / width` and adds `shift_steer_per_px * dx` to the label (a shift
to the right = the car points left of where it did = steer more to the right, +).

Under `torchrun --nproc_per_node N` (RANK and WORLD_SIZE set; gloo on CPU, NCCL on
CUDA, one GPU per rank: cuda:LOCAL_RANK) training is data-parallel: every rank walks the
same global chunk stream (same seed), and rank r owns the contiguous block r of the
`--batch` rows, so the rows (and the episodes they walk) are sharded deterministically;
each rank carries the truncated-BPTT state of its own rows. The model is wrapped in
DistributedDataParallel (gradients averaged), so N ranks of batch/N rows make the
updates one process of `--batch` rows makes. Checkpoints are written by rank 0 only;
`--resume` reads `<out>.last.pt` on every rank (a shared or copied path). docs/scale.md.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from steering_agent.common.cli_args import UsageError
from steering_agent.common.extras import require
from steering_agent.data.augment import CameraFaults, augment
from steering_agent.data.sequences import ChunkStream, PreparedEpisode, prepare, split_episodes
from steering_agent.policy.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.preprocess import PreprocessConfig, normalize

__all__ = [
    "CameraFaults", "ChunkStream", "PreparedEpisode", "TrainConfig", "augment",
    "split_episodes", "steering_loss", "train",
]  # fmt: skip
from steering_agent.policy.threads import set_torch_threads


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


def dist_from_env(cfg: TrainConfig) -> Dist:
    """The torchrun job this process is part of (RANK/WORLD_SIZE set), its process group
    initialised (gloo for a CPU device, NCCL for CUDA, each rank on cuda:LOCAL_RANK);
    `Dist()` where the variables are unset.

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


@dataclass
class TrainConfig:
    """Training settings (all recorded in the checkpoint's provenance)."""

    arch: str = "cnn_lstm"
    epochs: int = 10
    seq_len: int = 16
    batch: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    seed: int = 0
    device: str = "cpu"
    brightness: float = 0.25
    contrast: float = 0.25
    noise_std: float = 4.0
    max_shift_px: int = 4
    # 90 deg FOV over 200 px: 1 px = 0.00785 rad of yaw; the expert answers a heading
    # error one-for-one in wheel angle, and full steer is 70 deg (1.222 rad) of wheel.
    shift_steer_per_px: float = 0.0064
    # weight of the frame-to-frame loss: the squared error of each prediction's change
    # from the previous frame against the label's change (0: off). It teaches the network
    # to follow the expert's steering changes, not the frame-to-frame noise of the image.
    delta_weight: float = 0.0
    # camera faults (black, frozen, dim, glare spans) started per second per row, labels
    # kept (steering_agent.data.augment.CameraFaults; 0: off)
    camera_faults_per_s: float = 0.0
    frame_dt_s: float = 0.05
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


def _warmup_cosine(total_steps: int, warmup: float = 0.05):
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
    """Steering RMSE over whole episodes, state carried from each episode's first frame."""
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


def _reset_rows(state, fresh: np.ndarray):
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
    cfg: TrainConfig,
    rng,
    bar=None,
    dist: Dist | None = None,
) -> float:
    """One epoch; returns the mean loss over the global batch (averaged over ranks).

    Every rank draws the augmentation of the whole global batch (the same random numbers
    one process draws) and trains on its block of rows (`Dist.rows`)."""
    dist = dist or Dist()
    model.train()
    state, total, n = None, 0.0, 0
    rows = dist.rows(cfg.batch)
    faults = CameraFaults(cfg.batch, cfg.camera_faults_per_s, cfg.frame_dt_s,
                          cfg.preprocess.color, rng)  # fmt: skip
    for frames, steer, fresh in stream:
        frames = faults.apply(frames, fresh)
        x, y = augment(frames, steer, cfg, rng)
        x, y, fresh = x[rows], y[rows], fresh[rows]
        x, y = x.to(cfg.device, non_blocking=True), y.to(cfg.device, non_blocking=True)
        state = _reset_rows(state, fresh)
        pred, state = model(x, state)
        loss = steering_loss(pred, y, cfg.delta_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        total, n = total + loss.item(), n + 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / n:.4f}")
    mean = total / max(n, 1)
    if dist.world > 1:  # the ranks' means are over equal row counts: their mean is global
        import torch.distributed as tdist

        t = torch.tensor([mean], dtype=torch.float64)
        if str(cfg.device).startswith("cuda"):
            t = t.to(cfg.device)
        tdist.all_reduce(t)
        mean = float(t.item()) / dist.world
    return mean


def train(
    episodes: list,
    cfg: TrainConfig,
    out: str | os.PathLike,
    logdir: str | os.PathLike | None = None,
    resume: bool = False,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
    init: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train on `episodes` (Episode-likes, list or generator); save the best-val model to `out`.

    A resumable file with optimizer state is kept beside it as `<out>.last.pt`. `init`
    names a checkpoint whose weights training starts from (fine-tuning, e.g. on CARLA
    drives); its architecture and preprocessing must be `cfg`'s (see `init_checkpoint`).

    Without a validation episode (one episode, or `val_fraction` 0) no validation RMSE
    is measured: `val_rmse` is None in the history, `best_val_rmse` None, and `out`
    holds the last epoch's weights (its provenance says so under `validation`).

    Returns:
        dict(history=[{epoch, train_loss, val_rmse}], best_val_rmse, validation (the
        number of validation episodes), train_episodes, out, seconds).
    """
    if logdir:  # TensorBoard only where asked for (the `tensorboard` extra), before any work
        require("tensorboard", "--logdir (TensorBoard logging)")
    dist = dist_from_env(cfg)
    if dist.world > 1 and str(cfg.device).startswith("cuda"):
        cfg = replace(cfg, device=f"cuda:{dist.local_rank}")  # one GPU per rank
    try:
        return _train(episodes, cfg, out, logdir, resume, provenance, progress, init, dist)
    finally:
        if dist.owns_group:
            import torch.distributed as tdist

            tdist.destroy_process_group()


def _train(episodes, cfg, out, logdir, resume, provenance, progress, init, dist: Dist) -> dict:
    from tqdm import tqdm

    if logdir and dist.main:
        from torch.utils.tensorboard import SummaryWriter

    progress = progress and dist.main
    torch.manual_seed(cfg.seed)  # the same on every rank: one global stream, one init
    rng = np.random.default_rng(cfg.seed)
    set_torch_threads(int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1))
    t_start = time.monotonic()
    prepared = prepare(episodes, cfg.preprocess)
    if not prepared:
        raise UsageError("no training data: every episode has fewer than 2 frames")
    train_eps, val_eps = split_episodes(prepared, cfg.val_fraction, cfg.seed)
    if not val_eps and dist.main:
        print(
            f"warning: no validation episode ({len(prepared)} usable episode(s), val "
            f"fraction {cfg.val_fraction:g}): no val rmse is measured and the checkpoint "
            "holds the last epoch; record 2 or more episodes to validate",
            file=sys.stderr,
        )
    stream = ChunkStream(train_eps, cfg.batch, cfg.seq_len, rng)
    model_cfg = ModelConfig(arch=cfg.arch, height=cfg.preprocess.height, width=cfg.preprocess.width)
    model = SteeringNet(model_cfg)
    init_prov = {}
    if init is not None:
        if resume:
            raise UsageError("--init and --resume together: --resume continues <out>.last.pt")
        start = init_checkpoint(init, cfg)
        model.load_state_dict(_init_weights(start, model_cfg))
        init_prov = {"init": {"path": str(init), **_provenance_summary(start.provenance)}}
    model = model.to(cfg.device)
    net = model  # what is trained: `model` itself, or its DistributedDataParallel wrapper
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.local_rank] if str(cfg.device).startswith("cuda") else None
        net = DistributedDataParallel(model, device_ids=ids)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _warmup_cosine(cfg.epochs * len(stream)))
    out = Path(out)
    last_path = last_path_of(out)
    history, best, start_epoch = [], math.inf, 0
    if resume:
        start_epoch, best, history = _resume(last_path, model, opt, sched)
    writer = SummaryWriter(str(logdir)) if logdir and dist.main else None
    speeds = np.concatenate([e.speed for e in prepared])
    prov = {
        "train_episodes": [e.name for e in train_eps],
        "val_episodes": [e.name for e in val_eps],
        "train_frames": int(sum(len(e.steer) for e in train_eps)),
        "val_frames": int(sum(len(e.steer) for e in val_eps)),
        "target_speed_mps": _median_speed(speeds),
        "train_config": {k: v for k, v in asdict(cfg).items() if k != "preprocess"},
        **init_prov,
        **(provenance or {}),
    }
    for epoch in range(start_epoch, cfg.epochs):
        bar = tqdm(
            total=len(stream),
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            disable=not progress,
            leave=False,
        )
        loss = train_epoch(net, opt, sched, stream, cfg, rng, bar, dist)
        bar.close()
        if val_eps:
            val = evaluate_rmse(model, val_eps)
            improved, best = val < best, min(best, val)
            text = f"val rmse {val:.4f}"
        else:  # no validation: the checkpoint follows the last epoch, nothing is "val"
            val, improved, text = None, True, "no validation episode"
        history.append({"epoch": epoch + 1, "train_loss": loss, "val_rmse": val})
        if dist.main:
            print(f"epoch {epoch + 1}: train mse {loss:.5f}  {text}", file=sys.stderr)
        if writer is not None:
            writer.add_scalar("train/mse", loss, epoch + 1)
            if val is not None:
                writer.add_scalar("val/rmse", val, epoch + 1)
            writer.add_scalar("train/lr", sched.get_last_lr()[0], epoch + 1)
        seconds = time.monotonic() - t_start
        metrics = {
            "best_val_rmse": best if val_eps else None,
            "history": history,
            "train_seconds": round(seconds, 1),
        }
        if not val_eps:
            metrics["validation"] = "none: no validation episode, the last epoch's weights"
        if dist.world > 1:
            metrics["world_size"] = dist.world
        if improved and dist.main:
            save_checkpoint(out, model, model_cfg, cfg.preprocess, {**prov, **metrics})
        training_state = {
            "epoch": epoch + 1,
            "best": best,
            "history": history,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
        }
        if dist.main:
            save_checkpoint(
                last_path,
                model,
                model_cfg,
                cfg.preprocess,
                {**prov, **metrics},
                training_state=training_state,
            )
        if dist.world > 1:  # no rank runs ahead of the checkpoint rank 0 writes
            import torch.distributed as tdist

            tdist.barrier()
    if writer is not None:
        writer.close()
    return {
        "history": history,
        "best_val_rmse": best if val_eps else None,
        "validation": len(val_eps),
        "train_episodes": len(train_eps),
        "out": str(out),
        "seconds": time.monotonic() - t_start,
    }


def init_checkpoint(path: str | os.PathLike, cfg: TrainConfig):
    """The checkpoint `path` to start training from, checked against `cfg`.

    Raises:
        CheckpointError: unreadable, or its architecture or preprocessing differ from
            `cfg`'s (the message names the file and the option to change).
    """
    ckpt = _load_init(path)
    widen = ckpt.model_config.arch == "cnn" and cfg.arch == "cnn_stack"
    if ckpt.model_config.arch != cfg.arch and not widen:
        raise CheckpointError(
            f"--init {path} is a {ckpt.model_config.arch!r} network (only a cnn may start "
            f"a cnn_stack); pass --arch "
            f"{ckpt.model_config.arch} (this run asked for {cfg.arch!r})"
        )
    if ckpt.preprocess_config != cfg.preprocess:
        raise CheckpointError(
            f"--init {path} was trained with preprocessing {ckpt.preprocess_config}, "
            f"this run uses {cfg.preprocess}; leave --crop-top/--crop-bottom/--color "
            "unset to take the checkpoint's"
        )
    return ckpt


def _init_weights(start, model_cfg: ModelConfig) -> dict:
    """The --init checkpoint's weights for a `model_cfg` network. A single-frame `cnn`
    starts a frame-stack `cnn_stack`: its first convolution's weights, divided by the
    stack depth, go to each frame of the window, so the new network begins as the CNN
    on the window's mean frame (on a still scene: the CNN itself)."""
    weights = dict(start.state_dict)
    if start.model_config.arch == "cnn" and model_cfg.arch == "cnn_stack":
        key = "encoder.convs.0.weight"
        weights[key] = weights[key].repeat(1, model_cfg.stack, 1, 1) / model_cfg.stack
    return weights


def _load_init(path: str | os.PathLike):
    return load_checkpoint(path, option="--init")


def _provenance_summary(prov: dict) -> dict:
    """What a fine-tuned checkpoint records about the one it started from."""
    keep = ("data", "command", "best_val_rmse", "train_frames")
    return {k: prov[k] for k in keep if k in prov}


def _resume(last_path: Path, model, opt, sched) -> tuple[int, float, list]:
    ckpt = load_checkpoint(last_path, option="--resume")
    ts = ckpt.training_state
    if not ts:
        raise CheckpointError(f"--resume: {last_path} holds no optimizer state")
    model.load_state_dict(ckpt.state_dict)
    opt.load_state_dict(ts["optimizer"])
    sched.load_state_dict(ts["scheduler"])
    return int(ts["epoch"]), float(ts["best"]), list(ts["history"])


def _median_speed(speeds: np.ndarray) -> float | None:
    """The data's typical speed (the policy's default target); NaN = not yet reported."""
    finite = speeds[np.isfinite(speeds)]
    return float(np.median(finite)) if finite.size else None


def last_path_of(out: str | os.PathLike) -> Path:
    """The resumable file kept beside the checkpoint `out`."""
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")
