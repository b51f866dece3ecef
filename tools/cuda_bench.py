"""The stateful one-frame step on a CUDA GPU: batch 1 and 64, plain PyTorch against CUDA
graphs (steering_agent.policy.cuda_graphs) at fp32, fp16 and bf16.

    .venv/bin/python tools/cuda_bench.py [--checkpoint CKPT] [--calls 500] [--out FILE]

Each figure is the median of `--calls` calls of the torch backend's `run` (uint8 NHWC
frames in from host memory, steering out to the host: what the policy pays per frame),
after 50 warm-up calls, in `--repeats` interleaved rounds. A reduced precision that moves
the output by more than 1e-3 against fp32 is refused by the stepper; the row says so.
Writes docs/measurements/bench_cuda_<gpu>.json (the GPU's name, lower case, spaces as _)
unless --out is given. Without CUDA it says so and exits with status 2.

Goals (issue 20): on an H100/H200 the batch-1 step at most 0.3 ms, batch 64 at most 0.5 ms.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steering_agent.policy.backends import TorchStepper  # noqa: E402
from steering_agent.policy.model import ModelConfig, SteeringNet  # noqa: E402

CASES = (
    ("plain", False, "fp32"),
    ("cuda graphs", True, "fp32"),
    ("cuda graphs", True, "fp16"),
    ("cuda graphs", True, "bf16"),
)


def _model(checkpoint: str | None) -> SteeringNet:
    if checkpoint:
        from steering_agent.policy.checkpoint import load_checkpoint

        return load_checkpoint(checkpoint).build_model()
    torch.manual_seed(0)
    return SteeringNet(ModelConfig())


def _median_ms(stepper, frames: np.ndarray, calls: int) -> float:
    rows = np.arange(frames.shape[0])
    for _ in range(50):
        stepper.run(frames, rows, True)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        stepper.run(frames, rows, True)  # ends with the steering on the host: synchronised
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="default: an untrained network")
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("cuda_bench: no CUDA device here (torch.cuda.is_available() is False); "
              "nothing measured", file=sys.stderr)  # fmt: skip
        return 2
    dev = torch.device("cuda")
    gpu = torch.cuda.get_device_name(dev)
    base = _model(args.checkpoint).eval().to(dev)
    hw = (base.cfg.height, base.cfg.width)
    rng = np.random.default_rng(0)
    runs: dict[tuple, list] = {}
    refused: dict[tuple, str] = {}
    steppers: dict[tuple, object] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        for name, graphs, precision in CASES:
            key = (batch, name, precision)
            try:
                steppers[key] = TorchStepper(base, dev, batch, hw, cuda_graphs=graphs,
                                             precision=precision)  # fmt: skip
            except ValueError as e:
                refused[key] = str(e)
    for _ in range(args.repeats):  # interleaved rounds
        for key, stepper in steppers.items():
            frames = rng.integers(0, 256, (key[0], *hw, 3), dtype=np.uint8)
            runs.setdefault(key, []).append(_median_ms(stepper, frames, args.calls))
    results = []
    for batch, name, precision in [(b, n, p) for b in args.batches.split(",") for n, _, p in CASES]:
        key = (int(batch), name, precision)
        row = {"batch": int(batch), "path": name, "precision": precision}
        if key in refused:
            row["refused"] = refused[key]
        else:
            row.update(median_ms=statistics.median(runs[key]), runs_ms=runs[key])
        results.append(row)
        shown = row.get("median_ms")
        print(
            f"batch {batch:>3} {name:<12} {precision}: "
            + (f"{shown:.3f} ms" if shown is not None else f"refused ({row['refused']})")
        )
    slug = re.sub(r"[^a-z0-9]+", "_", gpu.lower()).strip("_")
    out = Path(args.out or REPO / "docs" / "measurements" / f"bench_cuda_{slug}.json")
    record = {
        "gpu": gpu,
        "torch": torch.__version__,
        "checkpoint": args.checkpoint,
        "calls_per_run": args.calls,
        "repeats": args.repeats,
        "image_hw": list(hw),
        "goals_ms": {"batch 1": 0.3, "batch 64": 0.5},
        "command": "tools/cuda_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "results": results,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
