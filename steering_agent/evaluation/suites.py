"""Named evaluation suites: fixed cells of settings, each driven on held-out seeds
(docs/benchmarks.md). `SUITES` maps each name to its `Suite`: cells, seeds and route.

- `lane`: today's benchmark (the plain look, one cell);
- `world`: the varied look (look="varied"), one lane and two lanes per direction;
- `cameras`: the camera and vehicle grid below;
- `memory`: the camera faults of `faults.memory_faults` on the plain road, one cell each;
- `highway`: the varied look at 20, 22.5 and 25 m/s with 2, 3 and 4 lanes per direction.

Every suite drives the held-out seeds ``eval_seeds(episodes, start=offset)`` (offset 0
by default: the same roads in every suite, so suites compare pairwise seed by seed).

`cameras`: the camera and vehicle grid. Not the full product of the values below but a
covering design (`camera_cells`): 15 cells in which every value of every factor occurs
at least three times, plus the canonical cell (the training camera and car), the CARLA
ROS bridge's `rgb_front` on CARLA's default car, and a 40-degree car with a 1280x720
camera on the bridge's mount.

    pitch 0, 5, 10, 15, 20 deg (down) | height 1.2, 1.5, 2.0, 2.4 m | FOV 60, 90, 110 deg
    200x66, 800x600, 1280x720         | lock 40, 55, 70 deg        | wheelbase 2.5, 2.9, 3.2 m

Every cell drives the same seeds; the policy is told the cell's camera and car
(`camera_spec()`, `vehicle_spec()`), as a user passes them to `SteeringPolicy.load`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from steering_agent.evaluation import metrics
from steering_agent.evaluation.faults import CameraFault, memory_faults
from steering_agent.evaluation.vec_eval import EvalConfig, make_policy, run_episodes

PITCH = (0.0, 5.0, 10.0, 15.0, 20.0)
HEIGHT = (1.2, 1.5, 2.0, 2.4)
FOV = (60.0, 90.0, 110.0)
RESOLUTION = ((200, 66), (800, 600), (1280, 720))
LOCK = (40.0, 55.0, 70.0)
WHEELBASE = (2.5, 2.9, 3.2)
CANONICAL = "canonical"


@dataclass(frozen=True)
class Cell:
    """One camera and car: a name and the env keyword arguments that make it."""

    name: str
    width: int
    height: int
    env_kwargs: tuple[tuple[str, object], ...]
    fault: CameraFault | None = None

    def config(self, route_length_m: float, num_envs: int) -> EvalConfig:
        return EvalConfig(
            route_length_m=route_length_m, width=self.width, height=self.height,
            num_envs=num_envs, env_kwargs=self.env_kwargs, fault=self.fault,
        )  # fmt: skip

    def describe(self) -> dict:
        d = {"width": self.width, "height": self.height, **dict(self.env_kwargs)}
        if self.fault is not None:
            d["fault"] = self.fault.describe()
        return d


def _cell(name, res, pitch, height_m, fov, lock, wheelbase, x_m=1.0) -> Cell:
    kw = (("camera_pitch_deg", pitch), ("camera_height_m", height_m), ("camera_x_m", x_m),
          ("fov_deg", fov), ("max_steer_deg", lock), ("wheelbase_m", wheelbase))  # fmt: skip
    return Cell(name, res[0], res[1], kw)


def camera_cells() -> list[Cell]:
    """The `cameras` suite (module doc)."""
    cells = [_cell(CANONICAL, (200, 66), 15.0, 1.5, 90.0, 70.0, 2.9)]
    for i in range(15):
        cells.append(
            _cell(
                f"grid{i:02d}",
                RESOLUTION[(i // 3) % 3],
                PITCH[i % 5],
                HEIGHT[i % 4],
                FOV[i % 3],
                LOCK[(i // 5) % 3],
                WHEELBASE[(i + i // 5) % 3],
            )
        )
    cells.append(_cell("carla_bridge", (800, 600), 0.0, 2.0, 90.0, 70.0, 2.875, x_m=2.0))
    cells.append(_cell("lock40_1280x720", (1280, 720), 0.0, 2.0, 90.0, 40.0, 2.875, x_m=2.0))
    return cells


def lane_cells() -> list[Cell]:
    return [Cell("plain", 200, 66, ())]


def world_cells() -> list[Cell]:
    return [
        Cell("varied", 200, 66, (("look", "varied"),)),
        Cell("varied_2lanes", 200, 66, (("look", "varied"), ("lanes_per_direction", 2))),
    ]


def memory_cells() -> list[Cell]:
    return [Cell(f.name, 200, 66, (), f) for f in memory_faults()]


def highway_cells() -> list[Cell]:
    out = []
    for lanes, speed in ((2, 20.0), (3, 22.5), (4, 25.0)):
        kw = (("look", "varied"), ("lanes_per_direction", lanes), ("target_speed_mps", speed))
        out.append(Cell(f"{lanes}lanes_{speed:g}mps", 200, 66, kw))
    return out


@dataclass(frozen=True)
class Suite:
    """A named suite: its cells (a function, so tests can swap them), default episodes
    per cell and route length, and the offset of its held-out seeds."""

    name: str
    cells: Callable[[], list[Cell]]
    episodes: int
    route_length_m: float
    seed_offset: int = 0
    about: str = ""


# Defaults sized so `--suite all` for two policies with --episodes 1 runs in minutes on
# two cores (--episodes and --route-length-m override them).
SUITES = {
    "lane": Suite("lane", lane_cells, 10, 500.0, about="the plain road"),
    "world": Suite("world", world_cells, 5, 500.0, about="the varied look"),
    "cameras": Suite("cameras", lambda: camera_cells(), 2, 100.0,
                     about="the camera and vehicle grid"),
    "memory": Suite("memory", memory_cells, 5, 300.0, about="camera faults"),
    "highway": Suite("highway", highway_cells, 3, 1000.0,
                     about="20-25 m/s, 2-4 lanes per direction"),
}  # fmt: skip


def resolve_suites(names: Sequence[str]) -> list[Suite]:
    """Suite names (or "all") -> suites, in the given order, each once.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    out: list[Suite] = []
    for name in names:
        chosen = list(SUITES) if name == "all" else [name]
        for n in chosen:
            if n not in SUITES:
                raise ValueError(f"--suite {n}: unknown suite; known: all, {', '.join(SUITES)}")
            if SUITES[n] not in out:
                out.append(SUITES[n])
    return out


def run_cells(
    spec: str,
    cells: Sequence[Cell],
    seeds: Sequence[int],
    route_length_m: float,
    num_envs: int = 4,
    device: str = "auto",
    on_cell: Callable[[str, dict], None] | None = None,
) -> dict[str, dict]:
    """Drive policy `spec` over every cell; {cell name: metrics.aggregate row + settings}."""
    rows, _ = run_cells_traces(spec, cells, seeds, route_length_m, num_envs, device, on_cell)
    return rows


def run_cells_traces(
    spec: str,
    cells: Sequence[Cell],
    seeds: Sequence[int],
    route_length_m: float,
    num_envs: int = 4,
    device: str = "auto",
    on_cell: Callable[[str, dict], None] | None = None,
    frame_hook: Callable | None = None,
) -> tuple[dict[str, dict], list[metrics.EpisodeTrace]]:
    """`run_cells`, and every cell's traces together (the suite's pooled row);
    `frame_hook` sees every step of the first cell's first episode (a report video)."""
    rows, pooled = {}, []
    for i, cell in enumerate(cells):
        cfg = cell.config(route_length_m, max(1, min(num_envs, len(seeds))))
        policy = make_policy(spec, cfg.num_envs, device, cfg)
        traces = run_episodes(policy, seeds, cfg, frame_hook=frame_hook if i == 0 else None)
        pooled += traces
        rows[cell.name] = {**metrics.aggregate(traces), "settings": cell.describe()}
        if on_cell is not None:
            on_cell(cell.name, rows[cell.name])
    return rows, pooled
