"""`steering-agent bench`: latency and throughput, median and spread over repeated runs.

Suites: `inference` (per-frame policy latency, stateful versus recomputing a window of 16
or 32 frames, batch 1 and 64, and the bare encoder beside the batch-1 step), `preprocess`
(frame to network input, plain and calibrated, RGB and bgra8), `sim` (simulator steps
per second at 200x66 and 800x600), `ros` (node and DDS latency at 200x66 and 800x600 and
their ratios, skipped with a note where rclpy is missing), `record` (episode-writer
throughput), `eval` (simulated km per hour of vectorised closed-loop evaluation),
`train` (training-loop frames/s and peak memory; steering_agent.bench_perf). Each
measurement is repeated `--repeats` times; the JSON keeps every run, the median, p10
and p90, plus the machine and versions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steering_agent.common import cli_args

SUITES = ("inference", "preprocess", "sim", "ros", "record", "eval", "train")


@dataclass
class Measurement:
    """One benchmarked quantity: a value per repeated run."""

    name: str
    unit: str
    runs: list[float]
    params: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        v = np.asarray(self.runs, dtype=np.float64)
        return {
            "name": self.name,
            "unit": self.unit,
            "median": float(np.median(v)),
            "p10": float(np.percentile(v, 10)),
            "p90": float(np.percentile(v, 90)),
            "runs": [float(x) for x in v],
            **self.params,
        }


@dataclass
class Skipped:
    """A measurement that could not run here, and why."""

    name: str
    reason: str

    def to_json(self) -> dict:
        return {"name": self.name, "skipped": self.reason}


def repeat(fn: Callable[[], float], repeats: int) -> list[float]:
    return [float(fn()) for _ in range(repeats)]


def _latency_model(policy: str | None):
    """A checkpoint to time (the given one, else the shipped one, else random weights)."""
    from steering_agent.policy.checkpoint import load_checkpoint
    from steering_agent.policy.model import ModelConfig, SteeringNet

    if policy:
        return load_checkpoint(policy), policy
    try:
        from steering_agent.common.package_files import shipped_checkpoint

        shipped = shipped_checkpoint()
        if shipped.is_file():
            return load_checkpoint(shipped), str(shipped)
    except FileNotFoundError:
        pass
    return SteeringNet(ModelConfig()).eval(), "random-weights cnn_lstm (latency only)"


def bench_inference(repeats: int, quick: bool, policy: str | None, device: str) -> list:
    """Per control step: stateful LSTM step versus re-running a 16/32-frame window.

    Every per-frame backend available on `device` is measured (onnxruntime and torch on
    the CPU); each policy is built once and reused across the repeated runs.
    """
    import torch

    from steering_agent.bench_perf import inference_encoder_rows
    from steering_agent.policy.backends import resolve_backend, resolve_device
    from steering_agent.policy.latency import benchmark_latency
    from steering_agent.policy.policy import BatchedSteeringPolicy

    model, source = _latency_model(policy)
    dev = resolve_device(device)
    backends = list(dict.fromkeys([resolve_backend("auto", dev), "torch"]))
    out = []
    for backend in backends:
        # --quick keeps the structure (batch > 1, both windows) at a size a test can afford.
        for batch in (1, 2) if quick else (1, 64):
            if isinstance(model, torch.nn.Module):
                pol = BatchedSteeringPolicy(
                    model, _preprocess_of(model), batch, dev, backend=backend
                )
            else:
                pol = BatchedSteeringPolicy.from_checkpoint(model, batch, dev, backend=backend)
            for window in (None, 16, 32):
                if quick:
                    calls = 2
                elif window is None:
                    calls = 200 if batch == 1 else 10
                else:
                    calls = max(2, (40 if batch == 1 else 8) // (1 + window // 8))
                mode = "stateful" if window is None else f"window {window}"

                def once(pol=pol, batch=batch, window=window, calls=calls) -> float:
                    r = benchmark_latency(pol, batch, window, calls, warmup=2, device=device)
                    return r["median_ms"]

                name = f"inference {mode}, batch {batch}, {backend}"
                params = {
                    "batch": batch,
                    "window": window,
                    "backend": backend,
                    "calls_per_run": calls,
                    "model": source,
                }
                runs = repeat(once, repeats)
                out.append(Measurement(name, "ms/step", runs, params))
                if batch == 1 and window is None:
                    out += inference_encoder_rows(pol, backend, repeats, quick)
    return out


def _preprocess_of(model):
    from steering_agent.policy.preprocess import PreprocessConfig

    return PreprocessConfig(height=model.cfg.height, width=model.cfg.width)


SIM_SEEDS = (0, 1, 2, 3)  # the varied look differs per seed: every rate is over these


def bench_sim(repeats: int, quick: bool) -> list:
    """Simulator steps/s of the plain and the varied look side by side at 200x66 and
    800x600 (each rate over the roads of `SIM_SEEDS`; the looks alternate within every
    repeat, so both see the same machine load), and varied / plain per repeat (the
    wider-world issue's goal: at least 0.5)."""
    try:
        from sim.bench import sim_steps_per_second
    except ImportError as e:
        return [Skipped("sim steps/s", f"sim.bench is not available: {e}")]
    out = []
    for w, h in ((200, 66), (800, 600)):
        steps = 20 if quick else (400 if w == 200 else 60)

        def rate(look: str, w=w, h=h, steps=steps) -> float:
            seconds = sum(steps / sim_steps_per_second(w, h, steps=steps, seed=s, look=look)
                          for s in SIM_SEEDS)  # fmt: skip
            return len(SIM_SEEDS) * steps / seconds

        runs: dict[str, list[float]] = {"plain": [], "varied": []}
        for _ in range(repeats):
            for look in runs:
                runs[look].append(rate(look))
        params = {"steps_per_seed": steps, "seeds": list(SIM_SEEDS)}
        name = f"sim {w}x{h}"  # the plain look keeps the name of the earlier rows
        out.append(Measurement(name, "steps/s", runs["plain"], {**params, "look": "plain"}))
        out.append(Measurement(f"{name} varied", "steps/s", runs["varied"],
                               {**params, "look": "varied"}))  # fmt: skip
        ratios = [v / p for v, p in zip(runs["varied"], runs["plain"], strict=True)]
        out.append(Measurement(f"sim {w}x{h} varied / plain", "ratio", ratios,
                               {"goal_at_least": 0.5}))  # fmt: skip
    return out


def _median_of(value) -> float | None:
    """A number, or the median of a {median, p90, ...} dict (the node's stats format)."""
    if isinstance(value, dict):
        value = value.get("median")
    return float(value) if isinstance(value, (int, float)) else None


def _checkpoint_file(model, folder: Path) -> str:
    """A checkpoint path for a node process (random weights saved to `folder` if need be)."""
    if hasattr(model, "path"):
        return str(model.path)
    import torch

    from steering_agent.policy.checkpoint import save_checkpoint
    from steering_agent.policy.preprocess import PreprocessConfig

    path = folder / "random_cnn_lstm.pt"
    prov = {"note": "random weights, latency only", "torch_version": str(torch.__version__)}
    return str(save_checkpoint(path, model, model.cfg, PreprocessConfig(), prov))


def bench_record(repeats: int, quick: bool) -> list:
    try:
        from steering_agent.data.recording import writer_throughput
    except ImportError as e:
        return [Skipped("record frames/s", f"steering_agent.data.recording is not available: {e}")]
    out = []
    for w, h in ((200, 66), (800, 600)):
        frames = 20 if quick else 300

        def once(w=w, h=h, frames=frames) -> float:
            return writer_throughput(w, h, frames)

        name = f"record {w}x{h} (MCAP)"
        out.append(Measurement(name, "frames/s", repeat(once, repeats), {"frames": frames}))
    return out


def bench_eval(repeats: int, quick: bool, policy: str | None, device: str) -> list:
    """Simulated km per wall-clock hour of vectorised evaluation at 200x66."""
    from steering_agent.evaluation.vec_eval import (
        EvalConfig,
        ExpertPolicy,
        make_policy,
        run_episodes,
    )

    num_envs, route_m = (2, 30.0) if quick else (16, 250.0)
    cfg = EvalConfig(route_length_m=route_m, num_envs=num_envs)
    from sim.seeds import eval_seeds

    model, source = _latency_model(policy)
    out = []
    for label in ("agent", "expert"):

        def once(label=label) -> float:
            if label == "expert":
                pol = ExpertPolicy()
            elif hasattr(model, "path"):  # a loaded Checkpoint
                pol = make_policy(str(model.path), num_envs, device)
            else:
                pol = _RandomCnnLstm(model, num_envs, device)
            t0 = time.perf_counter()
            traces = run_episodes(pol, eval_seeds(num_envs), cfg)
            km = sum(t.progress_m[-1] for t in traces) / 1000.0
            return km / (time.perf_counter() - t0) * 3600.0

        params = {"num_envs": num_envs, "route_length_m": route_m, "size": "200x66"}
        if label == "agent":
            params["model"] = source
        out.append(Measurement(f"eval {label}", "sim km/h", repeat(once, repeats), params))
    return out


class _RandomCnnLstm:
    """An untrained network through the batched runtime: eval speed only, not quality."""

    name = "random"

    def __init__(self, model, batch: int, device: str) -> None:
        from steering_agent.policy.policy import BatchedSteeringPolicy
        from steering_agent.policy.preprocess import PreprocessConfig

        self._p = BatchedSteeringPolicy(model, PreprocessConfig(), batch, device)

    def reset(self, indices=None) -> None:
        self._p.reset(indices)

    def act(self, images, stamps, speeds, expert, active):
        return self._p.step(images, stamps, speeds, active=active)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_suites(names: list[str], repeats: int, quick: bool, policy, device: str) -> list:
    out: list = []
    for name in names:
        t0 = time.perf_counter()
        if name == "inference":
            out += bench_inference(repeats, quick, policy, device)
        elif name == "preprocess":
            from steering_agent.bench_perf import bench_preprocess

            out += bench_preprocess(repeats, quick)
        elif name == "sim":
            out += bench_sim(repeats, quick)
        elif name == "ros":
            from steering_agent.bench_perf import bench_ros

            out += bench_ros(repeats, quick, policy)
        elif name == "record":
            out += bench_record(repeats, quick)
        elif name == "eval":
            out += bench_eval(repeats, quick, policy, device)
        elif name == "train":
            from steering_agent.bench_perf import bench_train

            out += bench_train(repeats, quick)
        print(f"bench {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


def table(results: list) -> str:
    """A readable fixed-width table of the measurements."""
    lines = [f"{'measurement':44} {'median':>10} {'p10':>10} {'p90':>10}  unit"]
    for r in results:
        j = r.to_json()
        if "skipped" in j:
            lines.append(f"{j['name']:44} skipped: {j['skipped']}")
            continue
        unit = j["unit"] + (f" (goal <= {j['goal_at_most']:g})" if "goal_at_most" in j else "")
        lines.append(
            f"{j['name']:44} {j['median']:10.3f} {j['p10']:10.3f} {j['p90']:10.3f}  {unit}"
        )
        if j["unit"] == "ms/step" and j.get("batch", 1) > 1:
            per = j["median"] / j["batch"]
            lines.append(f"{'  per frame':44} {per:10.3f} {'':10} {'':10}  ms/frame")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = cli_args
    parser.add_argument("suite", nargs="?", default="all", choices=[*SUITES, "all"])
    parser.add_argument("--json", type=Path, help="write the results JSON here")
    parser.add_argument(
        "--repeats", type=a.positive_int, default=5, help="repeated runs per measurement"
    )
    parser.add_argument("--policy", help="checkpoint to time (default: shipped, else random)")
    parser.add_argument(
        "--device", type=a.device, default="cpu", help=f"torch device for inference: {a.DEVICES}"
    )
    parser.add_argument(
        "--threads",
        type=a.positive_int,
        default=None,
        help="torch CPU threads (default: one per core)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")


def run(args: argparse.Namespace) -> int:
    """Checks --json and --policy first, then runs the suites. A user's mistake raises
    one of `cli_args.user_errors` (one line, exit 2, from `steering_agent.cli`)."""
    from steering_agent.evaluation.report import versions
    from steering_agent.policy.threads import set_torch_threads

    if args.repeats < 1:
        raise cli_args.UsageError(f"--repeats must be >= 1, got {args.repeats}")
    if args.json:
        cli_args.writable_file(args.json, "--json")
    if args.policy:
        from steering_agent.policy.checkpoint import load_checkpoint

        load_checkpoint(args.policy, option="--policy")
    set_torch_threads(args.threads)
    names = list(SUITES) if args.suite == "all" else [args.suite]
    results = run_suites(names, args.repeats, args.quick, args.policy, args.device)
    print(table(results))
    if args.json:
        doc = {
            "suites": names,
            "repeats": args.repeats,
            "quick": args.quick,
            "device": args.device,
            "threads": torch_threads(),
            "machine_and_versions": versions(),
            "results": [r.to_json() for r in results],
            "command": getattr(args, "_command_line", "steering-agent bench"),
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    return 0
