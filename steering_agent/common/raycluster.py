"""The Ray cluster of the fan-outs (`eval`/`record --workers N`, `--ray-address ADDR`;
docs/scale.md): whether one is asked for, joining it, and gathering task results with
one progress bar in the driver.

Ray is the `ray` extra: `check_workers` says, before any work, whether a fan-out is
asked for and stops with one line (`MissingExtra`) where Ray is not installed. Only the
functions that run a fan-out import ray; the serial default never does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from steering_agent.common.cli_args import UsageError
from steering_agent.common.extras import require

# a task reports its progress to the driver at most this often (one actor call each)
REPORT_EVERY_S = 0.5


def check_workers(workers: int, address: str | None) -> bool:
    """Whether a Ray fan-out is asked for (`workers` > 1 or an address); if so, Ray must be
    installed (nothing is imported here).

    Raises:
        MissingExtra: Ray is asked for and not installed (one line naming the extra).
        UsageError: `workers` < 1.
    """
    if workers < 1:
        raise UsageError(f"--workers must be >= 1, got {workers}")
    if workers == 1 and not address:
        return False
    option = "--ray-address" if address else f"--workers {workers}"
    require("ray", f"{option} (the Ray fan-out)")
    return True


def connect(workers: int, address: str | None) -> int:
    """Start a local Ray cluster of `workers` CPUs, or join the one at `address`; returns
    the number of CPUs the cluster has (how many one-CPU tasks run at once)."""
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, logging_level="WARNING")
        else:
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="WARNING")
    return int(ray.cluster_resources().get("CPU", workers))


def shutdown() -> None:
    """Leave the cluster (and stop a local one this process started)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


class Meter:
    """A Ray actor (made by `new_meter`): sums what the tasks report."""

    def __init__(self) -> None:
        self.total = 0.0

    def add(self, amount: float) -> None:
        self.total += amount

    def take(self) -> float:
        amount, self.total = self.total, 0.0
        return amount


def new_meter() -> Any:
    """A `Meter` actor on the cluster (it takes no CPU from the tasks)."""
    import ray

    return ray.remote(num_cpus=0)(Meter).remote()


class Reporter:
    """A task's progress callback: batches amounts into one `Meter.add` per
    REPORT_EVERY_S (call `flush` at the end); does nothing without a meter."""

    def __init__(self, meter: Any) -> None:
        self.meter, self.pending, self.last = meter, 0.0, time.monotonic()

    def __call__(self, amount: float) -> None:
        self.pending += amount
        if time.monotonic() - self.last >= REPORT_EVERY_S:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.meter is not None:
            self.meter.add.remote(self.pending)
        self.pending, self.last = 0.0, time.monotonic()


def gather(
    refs: Sequence[Any],
    meter: Any = None,
    on_progress: Callable[[float], None] | None = None,
    on_result: Callable[[int, Any], None] | None = None,
) -> list:
    """The results of the task refs `refs`, in their order. While they run,
    `on_progress` gets what `meter` collected (every REPORT_EVERY_S), and `on_result`
    gets (index, result) of each task as it finishes."""
    import ray

    where = {ref: i for i, ref in enumerate(refs)}
    results: list[Any] = [None] * len(refs)
    waiting = list(refs)

    def progress() -> None:
        if meter is not None and on_progress is not None:
            on_progress(ray.get(meter.take.remote()))

    while waiting:
        done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=REPORT_EVERY_S)
        for ref in done:
            results[where[ref]] = ray.get(ref)
            if on_result is not None:
                on_result(where[ref], results[where[ref]])
        progress()
    progress()
    return results
