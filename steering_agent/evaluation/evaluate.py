"""`steering-agent eval`: closed-loop evaluation of policies on held-out seeds.

Every policy drives the same evaluation seeds (`sim.seeds.eval_seeds`) in
`SteeringAgent/Drive-v0`; the metrics are those of `steering_agent.evaluation.metrics`.
Writes a JSON (one row per policy plus per-episode details, settings and versions),
prints a table, and with `--report DIR` also the Markdown table, plots and a video
(`steering_agent.evaluation.report`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sim.seeds import EVAL_SEED_START, eval_seeds, is_eval_seed
from steering_agent.common import cli_args
from steering_agent.common.cli_args import UsageError
from steering_agent.evaluation import metrics
from steering_agent.evaluation.eval_args import add_arguments  # noqa: F401  (the verb's)
from steering_agent.evaluation.vec_eval import (
    HOLD_PREFIX,
    EvalConfig,
    Perturbations,
    checkpoint_of,
    make_policy,
    run_episodes,
)
from steering_agent.policy.threads import set_torch_threads

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} m [{elapsed}<{remaining}]"


@dataclass
class PolicyRun:
    """One policy's evaluation: its row, its episodes and their traces (for plots)."""

    name: str
    spec: str
    traces: list[metrics.EpisodeTrace]
    wall_s: float
    summary: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        episodes = [metrics.summarize_episode(t).as_dict() for t in self.traces]
        return {"policy": self.spec, **self.summary, "wall_s": self.wall_s, "episodes": episodes}


def resolve_seeds(episodes: int, start: int, explicit: Sequence[int] | None = None) -> list[int]:
    """The evaluation seeds: `eval_seeds(episodes, start)`, or an explicit held-out list.

    Raises:
        UsageError: an explicit seed is a training seed (below `EVAL_SEED_START`).
    """
    if explicit:
        training = [s for s in explicit if not is_eval_seed(s)]
        if training:
            raise UsageError(
                f"--seeds {training} are training seeds (< {EVAL_SEED_START}); evaluation "
                f"uses held-out seeds only: pass seeds >= {EVAL_SEED_START} or use --seed OFFSET"
            )
        return [int(s) for s in explicit]
    if episodes < 1:
        raise UsageError(f"--episodes must be >= 1, got {episodes}")
    if start < 0:
        raise UsageError(f"--seed must be >= 0, got {start}")
    return eval_seeds(episodes, start=start)


def unique_names(specs: Sequence[str]) -> list[str]:
    """Table names: "expert" or the checkpoint's stem; checkpoints that share a stem are
    told apart by as many of their folders as it takes ("a/cnn", "b/cnn"); the same
    file given twice gets a suffix ("cnn_2")."""
    if any(spec.startswith(HOLD_PREFIX) for spec in specs):
        inner = [spec.removeprefix(HOLD_PREFIX) for spec in specs]
        distinct = list(dict.fromkeys(inner))
        label = dict(zip(distinct, unique_names(distinct), strict=True))
        return _dedupe([HOLD_PREFIX + label[i] if s.startswith(HOLD_PREFIX) else label[i]
                        for i, s in zip(inner, specs, strict=True)])  # fmt: skip
    labels = [spec if checkpoint_of(spec) is None else Path(spec).stem for spec in specs]
    for stem in set(labels):
        group = [i for i, label in enumerate(labels) if label == stem and checkpoint_of(specs[i])]
        paths = {Path(specs[i]).resolve() for i in group}
        if len(paths) < 2:
            continue
        folders = {i: Path(specs[i]).resolve().parent.parts[1:] for i in group}  # no root
        for depth in range(1, max(len(f) for f in folders.values()) + 1):
            tails = {i: "/".join([*f[-depth:], stem]) for i, f in folders.items()}
            if len(set(tails.values())) == len(paths):
                labels = [tails.get(i, label) for i, label in enumerate(labels)]
                break
    return _dedupe(labels)


def _dedupe(labels: Sequence[str]) -> list[str]:
    names: list[str] = []
    for base in labels:
        name, n = base, 2
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def file_label(name: str) -> str:
    """A policy's table name as part of a file name ("a/cnn" -> "a_cnn")."""
    return name.replace("/", "_").replace("\\", "_")


def evaluate_policies(
    specs: Sequence[str],
    seeds: Sequence[int],
    cfg: EvalConfig,
    device: str = "auto",
    frame_hooks: dict | None = None,
    progress: bool = True,
    fanout: bool = False,
    threads: int | None = None,
) -> list[PolicyRun]:
    """Runs every policy over the same seeds; one `PolicyRun` per policy, in order.

    Args:
        frame_hooks: optional {policy name: hook} called on each step of the first seed's
            episode (the report's video; not with `fanout`).
        fanout: Ray tasks of chunks of the seeds, on the cluster `raycluster.connect`
            joined (the same episodes as the serial run of the same torch threads).
        threads: torch threads of each Ray task (default 1).
    """
    from tqdm import tqdm

    runs = []
    total_m = len(seeds) * cfg.route_length_m
    for name, spec in zip(unique_names(specs), specs, strict=True):
        hook = (frame_hooks or {}).get(name)
        bar = tqdm(
            total=round(total_m),
            unit="m",
            desc=name,
            disable=not progress,
            mininterval=0.5,
            bar_format=_BAR_FORMAT,
        )
        t0 = time.perf_counter()
        if fanout:
            from steering_agent.evaluation.fanout import run_episodes_ray

            traces = run_episodes_ray(
                spec, seeds, cfg, device, on_progress=bar.update, threads=threads
            )
        else:
            batch = max(1, min(cfg.num_envs, len(seeds)))
            policy = make_policy(spec, batch_size=batch, device=device, cfg=cfg)
            traces = run_episodes(policy, seeds, cfg, frame_hook=hook, on_progress=bar.update)
        bar.close()
        run = PolicyRun(name, spec, traces, wall_s=time.perf_counter() - t0)
        run.summary = metrics.aggregate(traces)
        runs.append(run)
    return runs


def results_json(
    runs: Sequence[PolicyRun], seeds: Sequence[int], cfg: EvalConfig, workers: int = 1
) -> dict:
    """The evaluation's JSON document (policies keyed by name; settings; versions;
    `workers`, the Ray tasks run at once, is under throughput: it changes no result)."""
    from steering_agent.evaluation.report import versions

    sim_km = sum(r.summary["distance_km"] for r in runs)
    wall_s = sum(r.wall_s for r in runs)
    return {
        "settings": {
            "seeds": [int(s) for s in seeds],
            "route_length_m": cfg.route_length_m,
            "width": cfg.width,
            "height": cfg.height,
            "num_envs": cfg.num_envs,
            **cfg.perturb.as_dict(),
            **dict(cfg.env_kwargs),
            "policy_told_camera": cfg.tell_policy,
            "intervention_threshold_m": metrics.INTERVENTION_THRESHOLD_M,
            "intervention_penalty_s": metrics.INTERVENTION_PENALTY_S,
        },
        "penalties": metrics.penalty_table(),
        "policies": {r.name: r.to_json() for r in runs},
        "throughput": {
            "wall_s": wall_s,
            "distance_km": sim_km,
            "sim_km_per_hour": sim_km / wall_s * 3600.0 if wall_s > 0 else None,
            "workers": workers,
        },
        "versions": versions(),
        "command": " ".join(["steering-agent", *sys.argv[1:]]),
    }


def config_from_args(args: argparse.Namespace) -> EvalConfig:
    """The evaluation settings of the command line.

    Raises:
        UsageError: a setting out of range (names the option).
    """
    if args.episodes is None:
        args.episodes = 20
    if args.route_length_m is None:
        args.route_length_m = 1000.0
    if args.num_envs < 1:
        raise UsageError(f"--num-envs must be >= 1, got {args.num_envs}")
    if not args.route_length_m > 0:
        raise UsageError(f"--route-length-m must be > 0, got {args.route_length_m}")
    try:
        perturb = Perturbations(
            frame_drop=args.frame_drop,
            image_noise=args.image_noise,
            brightness=args.brightness,
            control_delay=args.control_delay,
        )
    except ValueError as e:  # the messages name the options
        raise UsageError(str(e)) from None
    from sim.limits import LIMITS

    given = tuple((k, getattr(args, k)) for k in LIMITS if getattr(args, k, None) is not None)
    return EvalConfig(
        route_length_m=args.route_length_m,
        width=args.width,
        height=args.height,
        num_envs=args.num_envs,
        perturb=perturb,
        env_kwargs=given,
        tell_policy=not args.uncalibrated,
    )


def check_inputs(args: argparse.Namespace) -> tuple[EvalConfig, list[int]]:
    """Everything `eval` is given, checked before any episode is driven: the outputs can
    be written, every checkpoint loads, the settings and seeds are valid.

    Raises:
        UsageError, CheckpointError: one line naming the option.
    """
    if args.json:
        cli_args.writable_file(args.json, "--json")
    if args.report:
        cli_args.writable_dir(args.report, "--report")
    from steering_agent.policy.checkpoint import load_checkpoint

    for spec in args.policy:
        if checkpoint_of(spec) is not None:
            load_checkpoint(checkpoint_of(spec), option="--policy")
    if args.suite:
        from steering_agent.evaluation.suites import resolve_suites

        try:
            resolve_suites(args.suite)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if uses_ray(args):
            raise UsageError("--suite runs serially: drop --workers/--ray-address")
        resolve_seeds(1, args.seed, args.seeds)  # refuses training seeds
        set_torch_threads(args.threads)
        return EvalConfig(), []
    cfg = config_from_args(args)
    seeds = resolve_seeds(args.episodes, args.seed, args.seeds)
    set_torch_threads(args.threads)
    return cfg, seeds


def uses_ray(args: argparse.Namespace) -> bool:
    """Whether `eval` fans out over Ray (checked first: a missing extra stops it at once).

    Raises:
        MissingExtra: --workers > 1 or --ray-address without Ray installed.
    """
    from steering_agent.common.raycluster import check_workers

    return check_workers(getattr(args, "workers", 1), getattr(args, "ray_address", None))


def run(args: argparse.Namespace) -> int:
    from steering_agent.evaluation.carla_eval import run_carla, wants_carla

    if wants_carla(args):  # one env per CARLA server (steering_agent.evaluation.carla_eval)
        return run_carla(args)
    fan = uses_ray(args)  # before anything slow: a missing extra is one line at once
    cfg, seeds = check_inputs(args)
    if args.suite:
        from steering_agent.evaluation.suite_run import run_suites

        return run_suites(args, unique_names(args.policy), args.policy)
    if fan:
        return _run_fanned(args, cfg, seeds)
    return _run(args, cfg, seeds)


def _run_fanned(args: argparse.Namespace, cfg: EvalConfig, seeds: list[int]) -> int:
    from steering_agent.common import raycluster

    workers = raycluster.connect(args.workers, args.ray_address)
    if args.report and not args.no_video:
        print("note: no video with the Ray fan-out (the episodes run elsewhere)", file=sys.stderr)
        args.no_video = True
    try:
        return _run(args, cfg, seeds, workers=workers)
    finally:
        raycluster.shutdown()


def _run(args: argparse.Namespace, cfg: EvalConfig, seeds: list[int], workers: int = 0) -> int:
    """The evaluation, serial (`workers` 0) or over the Ray cluster of `workers` CPUs."""
    from steering_agent.evaluation import report

    names = unique_names(args.policy)
    skipped = report.plots_notice() if args.report else None
    if skipped:
        print(f"note: {skipped}", file=sys.stderr)
    video = None
    if args.report and not args.no_video:
        path = args.report / f"episode_{file_label(names[0])}_{seeds[0]}.mp4"
        video = report.EpisodeVideo(path, names[0])
    try:
        runs = evaluate_policies(
            args.policy,
            seeds,
            cfg,
            device=args.device,
            frame_hooks={names[0]: video.add} if video else None,
            progress=not args.quiet,
            fanout=workers > 0,
            threads=args.threads,
        )
    finally:
        if video:
            video.close()
    doc = results_json(runs, seeds, cfg, workers=max(1, workers))
    print(report.markdown_table(doc))
    clamped = [name for name, row in doc["policies"].items() if row.get("autonomy_clamped")]
    if clamped:
        print(
            f"autonomy of {', '.join(clamped)} clamped at 0 %: more than one intervention "
            f"per {metrics.INTERVENTION_PENALTY_S:g} s (compare their interventions)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    if args.report:
        for path in report.write_report(args.report, doc, runs, video=video):
            print(f"wrote {path}")
    return 0
