"""`steering-agent eval --env carla --carla-servers HOST:PORT,...`: the evaluation on CARLA
servers (`steering_agent.evaluation.carla_servers`), its options, JSON and exit code.

The JSON is `eval`'s (`evaluate.results_json`) plus `settings.env` = "carla", a top-level
`complete` and `missing_seeds`, per policy its `complete`, `missing_seeds` and
`episode_status` (one entry per seed, in seed order), and `carla`: every server's
state and the `failed_servers` with their errors. A policy's row aggregates only the
episodes that ran. An incomplete run prints `INCOMPLETE: ...` and exits with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from steering_agent.common.cli_args import UsageError

EXIT_INCOMPLETE = 1


def add_carla_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `eval` on CARLA (docs/scale.md, docs/carla.md)."""
    from steering_agent.common import cli_args as a

    group = parser.add_argument_group("CARLA (docs/scale.md: CARLA servers on several GPUs)")
    group.add_argument(
        "--env",
        choices=("embedded", "carla"),
        default=None,
        help="the simulator: embedded (SteeringAgent/Drive-v0, the default) or carla "
        "(SteeringAgent/CarlaDrive-v0 on --carla-servers; implied by --carla-servers)",
    )
    group.add_argument(
        "--carla-servers",
        default=None,
        metavar="HOST:PORT,...",
        help="CARLA servers, one env each, the seeds shared out as they free up; a "
        "failing server is retried once on a fresh connection, then left out "
        "(default with --env carla: localhost:2000)",
    )
    group.add_argument("--carla-town", default="Town01", help="map every server loads")
    group.add_argument(
        "--carla-tm-port", type=a.positive_int, default=8000, metavar="BASE",
        help="traffic manager port of the first server; server i uses BASE+i",
    )  # fmt: skip
    group.add_argument(
        "--carla-timeout",
        type=a.positive_float,
        default=10.0,
        help="seconds a CARLA call may take before its server counts as failed",
    )


def wants_carla(args: argparse.Namespace) -> bool:
    """Whether `eval` runs on CARLA servers (`--env carla`, or `--carla-servers` given).

    Raises:
        UsageError: `--carla-servers` with `--env embedded`.
    """
    env, servers = getattr(args, "env", None), getattr(args, "carla_servers", None)
    if env == "embedded" and servers:
        raise UsageError("--carla-servers needs --env carla (or leave --env out)")
    return env == "carla" or (env is None and bool(servers))


def run_carla(args: argparse.Namespace) -> int:
    """`eval` on the CARLA servers of `args` (module doc); 0, or 1 when incomplete."""
    from steering_agent.evaluation import carla_servers as cs
    from steering_agent.evaluation import evaluate, report

    if args.suite:
        raise UsageError("--suite runs on the embedded simulator: drop it with --env carla")
    if args.workers > 1 or args.ray_address:
        raise UsageError(
            "--env carla runs one env per CARLA server (--carla-servers): drop "
            "--workers/--ray-address"
        )
    servers = cs.parse_servers(args.carla_servers or "localhost:2000")
    cfg, seeds = evaluate.check_inputs(args)
    options = cs.carla_env_options(cfg, args.carla_town, args.carla_timeout)
    if not args.carla_tm_port + len(servers) - 1 <= 65535:
        raise UsageError(f"--carla-tm-port {args.carla_tm_port}: BASE+servers must be <= 65535")
    factory = cs.gym_env_factory(options, servers, args.carla_tm_port)
    if args.report and not args.no_video:
        print(
            "note: no video with --env carla (the episodes run in the servers' threads)",
            file=sys.stderr,
        )
    pool = cs.CarlaServerPool(servers, factory)
    runs, results = _evaluate(pool, args, seeds, cfg)
    doc = evaluate.results_json(runs, seeds, cfg, workers=len(servers))
    doc = carla_document(doc, args.policy, runs, results, pool, options)
    shown = {**doc, "policies": {k: v for k, v in doc["policies"].items() if v["episodes_run"]}}
    if shown["policies"]:
        print(report.markdown_table(shown))
    for srv in pool.servers:
        state = "alive" if srv.alive else "DEAD"
        last = f"; last error: {srv.errors[-1]['error']}" if srv.errors else ""
        print(
            f"CARLA server {srv.address}: {state}, {srv.episodes} episodes, "
            f"{len(srv.errors)} failures{last}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")
    notice = incomplete_notice(doc, len(seeds) * len(args.policy))
    if args.report:
        for path in _write_report(args.report, doc, shown, runs, notice):
            print(f"wrote {path}")
    if notice is None:
        return 0
    print(notice)
    return EXIT_INCOMPLETE


def incomplete_notice(doc: dict, total: int) -> str | None:
    """The line that says a run is incomplete (None when it is complete)."""
    if doc["complete"]:
        return None
    missing = sum(len(row["missing_seeds"]) for row in doc["policies"].values())
    dead = [s["server"] for s in doc["carla"]["failed_servers"] if not s["alive"]]
    return (
        f"INCOMPLETE: {missing} of {total} episodes could not be run (missing seeds "
        f"{doc['missing_seeds']}); dead CARLA servers: {', '.join(dead) or 'none'}; the "
        "rows above cover only the episodes that ran"
    )


def _write_report(out_dir, doc: dict, shown: dict, runs, notice: str | None) -> list:
    """`report.write_report` of the policies that ran; results.json the full document;
    an incomplete run says so at the top of results.md and index.html."""
    from html import escape

    from steering_agent.evaluation import report

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    if shown["policies"]:
        written = report.write_report(out_dir, shown, [r for r in runs if r.traces])
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2))
    md = out_dir / "results.md"
    if notice is not None:
        old = md.read_text() if md.is_file() else ""
        md.write_text(f"**{notice}**\n\n{old}")
        page = out_dir / "index.html"
        if page.is_file():
            banner = f'<p style="color:#b00"><strong>{escape(notice)}</strong></p>'
            page.write_text(page.read_text().replace("<body>", "<body>" + banner, 1))
    return written or [out_dir / "results.json", md]


def _evaluate(pool, args, seeds, cfg):
    """Every policy over the pool, one after the other (as `evaluate_policies`)."""
    from tqdm import tqdm

    from steering_agent.evaluation import evaluate, metrics

    runs, results = [], []
    for name, spec in zip(evaluate.unique_names(args.policy), args.policy, strict=True):
        bar = tqdm(
            total=round(len(seeds) * cfg.route_length_m),
            unit="m",
            desc=name,
            disable=args.quiet,
            mininterval=0.5,
            bar_format=evaluate._BAR_FORMAT,
        )
        t0 = time.perf_counter()
        try:
            result = pool.run_policy(spec, seeds, cfg, args.device, on_progress=bar.update)
        finally:
            bar.close()
        done = [t for t in result.traces if t is not None]
        run = evaluate.PolicyRun(name, spec, done, wall_s=time.perf_counter() - t0)
        run.summary = metrics.aggregate(done) if done else {"distance_km": 0.0}
        run.summary["episodes_run"] = len(done)
        runs.append(run)
        results.append(result)
    return runs, results


def carla_document(doc: dict, specs, runs, results, pool, options: dict) -> dict:
    """`doc` (eval's JSON) with the CARLA run's completeness and servers (module doc)."""
    from steering_agent.evaluation.carla_servers import FAILURES_TO_DEAD

    missing: list[int] = []
    for run, result in zip(runs, results, strict=True):
        row = doc["policies"][run.name]
        row["complete"] = result.complete
        row["missing_seeds"] = result.missing_seeds
        row["episode_status"] = [s.as_dict() for s in result.status]
        missing += [s for s in result.missing_seeds if s not in missing]
    doc["settings"]["env"] = "carla"
    doc["settings"]["num_envs"] = 1  # per server: one episode at a time
    doc["settings"]["carla_town"] = options.get("town")
    doc["settings"]["carla_timeout_s"] = options.get("timeout")
    doc["settings"]["carla_servers"] = [s.address for s in pool.servers]
    doc["complete"] = all(r.complete for r in results)
    doc["missing_seeds"] = sorted(missing)
    doc["carla"] = {
        "servers": [s.as_dict() for s in pool.servers],
        "failed_servers": [s.as_dict() for s in pool.failed],
        "retries_before_dead": FAILURES_TO_DEAD - 1,
    }
    return doc
