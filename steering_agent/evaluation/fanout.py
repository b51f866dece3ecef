"""Ray fan-out of evaluation episodes (`eval --workers N` / `--ray-address ADDR`): one
task per chunk of seeds (as many chunks as the cluster has CPUs), each with its own
simulators stepped together as `run_episodes` steps them, traces gathered in the order of the seeds,
one progress bar in the driver (the cluster: `steering_agent.common.raycluster`;
docs/scale.md).

A seed's episode is deterministic (its road, its perturbation rng; the network's
output per row does not depend on the batch it runs in), so the fan-out's episodes are
those of the serial run with the same torch threads, number for number
(tests/test_fanout.py). The thread count matters to a checkpoint's episodes in the 7th
digit (the convolutions' sums are split across threads): a task runs `threads` (default
1, as the cluster runs one task per CPU), the serial run one per core unless `--threads`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from steering_agent.common import raycluster
from steering_agent.evaluation import metrics
from steering_agent.evaluation.vec_eval import EvalConfig, make_policy, run_episodes


def drive_seeds_task(
    spec: str,
    seeds: Sequence[int],
    cfg: EvalConfig,
    device: str,
    threads: int = 1,
    meter: Any = None,
) -> list[metrics.EpisodeTrace]:
    """The episodes of policy `spec` on `seeds` (`run_episodes`: up to `cfg.num_envs`
    simulators stepped together), with `threads` torch threads (the body of a Ray task;
    module-level, so a worker imports it by name)."""
    from steering_agent.policy.threads import set_torch_threads

    set_torch_threads(threads)
    batch = max(1, min(cfg.num_envs, len(seeds)))
    policy = make_policy(spec, batch_size=batch, device=device, cfg=cfg)
    report = raycluster.Reporter(meter)
    try:
        return run_episodes(policy, list(seeds), cfg, on_progress=report)
    finally:
        report.flush()


def chunks(seeds: Sequence[int], n: int) -> list[list[int]]:
    """`seeds` in `n` (at most len(seeds)) contiguous chunks whose sizes differ by <= 1."""
    n = max(1, min(n, len(seeds)))
    size, extra = divmod(len(seeds), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append([int(s) for s in seeds[start:end]])
        start = end
    return out


def run_episodes_ray(
    spec: str,
    seeds: Sequence[int],
    cfg: EvalConfig,
    device: str = "cpu",
    on_progress: Callable[[float], None] | None = None,
    threads: int | None = None,
    tasks: int | None = None,
) -> list[metrics.EpisodeTrace]:
    """`run_episodes` of policy `spec` over `seeds` as `tasks` Ray tasks (default: one per
    CPU of the cluster `raycluster.connect` joined), each a contiguous chunk of the
    seeds; traces in the order of `seeds`; `on_progress` gets the metres driven (all
    tasks together)."""
    import ray

    if tasks is None:
        tasks = int(ray.cluster_resources().get("CPU", 1))
    meter = raycluster.new_meter() if on_progress is not None else None
    task = ray.remote(num_cpus=1)(drive_seeds_task)
    refs = [
        task.remote(spec, chunk, cfg, device, threads or 1, meter) for chunk in chunks(seeds, tasks)
    ]
    return [t for part in raycluster.gather(refs, meter, on_progress) for t in part]
