"""Record expert drives from the gym env into rosbag2 (MCAP) bags, one per episode.

Each bag carries what the CARLA ROS bridge would publish (steering_agent.interfaces.topics), all
stamped with simulation time: the camera image (bgra8) and camera_info, the speedometer,
/clock, the control that was executed and, on its own topic, the expert's clean label.
With `--noise`, the executed steering is the expert's plus a temporally correlated
(Ornstein-Uhlenbeck) drift, so the car wanders off centre and the labels show the
recovery; the label topic always carries the clean expert action.

CLI verb: `steering-agent record --episodes N --out DIR [--seed S] [--noise SIGMA] ...`.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from steering_agent.common.cli_args import UsageError
from steering_agent.data.episode_bags import (
    EpisodeBagWriter,
    add_to_episode_index,
    read_episode_index,
)


class SteeringNoise:
    """Ornstein-Uhlenbeck drift on steering: stationary std `sigma`, time constant 1/theta.

    Correlated over about 1/theta seconds, so the car drifts off centre for a while
    (unlike white noise, which the vehicle's inertia would average away).
    """

    def __init__(self, sigma: float, dt: float, theta: float = 1.0, seed: int = 0) -> None:
        self.sigma, self.dt, self.theta = float(sigma), float(dt), float(theta)
        self.rng = np.random.default_rng(seed)
        self.value = 0.0

    def sample(self) -> float:
        """Advance one step of `dt` and return the current offset."""
        if self.sigma <= 0.0:
            return 0.0
        diffusion = self.sigma * math.sqrt(2.0 * self.theta * self.dt)
        self.value += -self.theta * self.value * self.dt + diffusion * self.rng.normal()
        return self.value


def check_training_seeds(seed: int, episodes: int) -> None:
    """Raises UsageError unless road seeds seed..seed+episodes-1 are all training seeds."""
    from sim.seeds import EVAL_SEED_START, is_eval_seed

    if seed < 0:
        raise UsageError(f"--seed {seed}: road seeds must be >= 0")
    last = seed + episodes - 1
    if is_eval_seed(last):
        raise UsageError(
            f"--seed {seed} with --episodes {episodes} reaches road seed {last}, which is "
            f"reserved for evaluation (seeds >= {EVAL_SEED_START}); pick --seed at most "
            f"{EVAL_SEED_START - episodes}"
        )


def record_episode(
    env: Any,
    path: Path,
    road_seed: int,
    noise: SteeringNoise,
    max_steps: int | None = None,
    image_encoding: str = "bgra8",
    driver: Any = None,
) -> dict:
    """Drive one episode in `env` and write it to the bag `path`; return its entry.

    The expert drives, unless `driver` (a `dagger.PolicyDriver`) is given: then its
    command is executed and the expert's action is still the label. `noise` is added to
    the executed steering either way."""
    obs, info = env.reset(seed=road_seed)
    if driver is not None:
        driver.reset()
    height, width = obs["image"].shape[:2]
    dt = float(getattr(env.unwrapped, "dt", 0.05))
    steps, max_lateral = 0, 0.0
    with EpisodeBagWriter(
        path, width, height, env.unwrapped.camera_info(), image_encoding
    ) as writer:
        while max_steps is None or steps < max_steps:
            expert = np.asarray(info["expert_action"], np.float32)
            stamp_s = float(info.get("sim_time_s", steps * dt))
            if driver is None:
                executed = expert.copy()
            else:
                executed = driver.command(obs, info, expert, stamp_s)
            executed[0] = np.clip(executed[0] + noise.sample(), -1.0, 1.0)
            writer.write_step(
                stamp_s, obs["image"], float(np.ravel(obs["speed"])[0]), executed, expert
            )
            obs, _, terminated, truncated, info = env.step(executed)
            steps += 1
            max_lateral = max(max_lateral, abs(float(info.get("lateral_error_m", 0.0))))
            if terminated or truncated:
                break
    u = env.unwrapped
    specs = {}
    if hasattr(u, "camera_spec"):
        specs["camera"] = {k: float(v) for k, v in u.camera_spec().items()}
    if hasattr(u, "vehicle_spec"):
        specs["vehicle"] = {k: float(v) for k, v in u.vehicle_spec().items()}
    if driver is not None:
        specs.update(driver.summary())
    return {
        **specs,
        "seed": road_seed,
        "steps": steps,
        "frames": writer.frames,
        "distance_m": round(float(info.get("progress_m", 0.0)), 3),
        "max_lateral_error_m": round(max_lateral, 3),
        "off_road": bool(info.get("off_road")),
        "bag": path.name,
    }


def record_episodes(
    out_dir: str | Path,
    episodes: int,
    seed: int = 0,
    noise_sigma: float = 0.0,
    width: int = 200,
    height: int = 66,
    route_length_m: float | None = None,
    max_steps: int | None = None,
    progress: bool = True,
    fanout: bool = False,
    look: str | None = None,
    randomize_camera: bool = False,
    driver: str | None = None,
    keep_size: bool = False,
    weather: str | None = None,
    lanes_per_direction: int | None = None,
) -> list[dict]:
    """Record `episodes` expert drives on road seeds seed..seed+episodes-1 (with
    `fanout`, one Ray task per episode on the cluster `raycluster.connect` joined).

    `look` is the env's look ("plain", "varied"; None: the env's default). With
    `randomize_camera`, each episode's camera (mount, FOV, image size) and car are drawn
    by `steering_agent.data.setups.draw_setup(seed)` instead of `width` x `height` on
    the training camera (`keep_size`: the drawn mount, FOV and car, but `width` x
    `height`); each index entry records its `camera` and `vehicle` specs.
    `weather` (a weather kind) and `lanes_per_direction` (1-4) fix those env keywords on
    every episode (None: the look's).
    With `driver` (a checkpoint path), the checkpoint drives and the expert labels
    (DAgger, `steering_agent.data.dagger`).

    Writes DIR/episode_<i>_seed<s>/ (one bag each) and DIR/index.json listing seed,
    steps, frames, distance_m, camera size, noise and bag path per episode; episodes
    already in DIR, and those other recordings add meanwhile, stay in its index
    (`add_to_episode_index`).

    Raises:
        UsageError (a ValueError): a seed is an evaluation seed, a bag directory already
            exists, or DIR's index.json cannot be read.
    """
    kwargs: dict[str, Any] = {"width": width, "height": height}
    if route_length_m is not None:
        kwargs["route_length_m"] = route_length_m
    if look is not None:
        kwargs["look"] = look
    for key, val in (("weather", weather), ("lanes_per_direction", lanes_per_direction)):
        if val is not None:
            kwargs[key] = val
    return record_env_episodes(
        "SteeringAgent/Drive-v0",
        kwargs,
        out_dir,
        episodes,
        seed,
        noise_sigma,
        max_steps,
        progress,
        fanout=fanout,
        per_episode=_setup_drawer(randomize_camera, (width, height) if keep_size else None),
        driver=driver,
    )


def _setup_drawer(randomize: bool, size: tuple[int, int] | None):
    """`per_episode` for `record_env_episodes` (picklable for Ray): None without
    `randomize`; with `size`, every drawn camera keeps that image size."""
    if not randomize:
        return None
    return _random_setup if size is None else functools.partial(_random_setup, size=size)


def _random_setup(seed: int, size: tuple[int, int] | None = None) -> tuple[str, dict]:
    """`setups.draw_setup(seed)`; with `size` (width, height) the drawn camera keeps
    its mount, FOV and car but takes that image size (the canonical draw is unchanged)."""
    from steering_agent.data.setups import draw_setup

    name, kwargs = draw_setup(seed)
    if size is not None and kwargs:
        kwargs = dict(kwargs, width=int(size[0]), height=int(size[1]))
        name = f"{name}@{size[0]}x{size[1]}"
    return name, kwargs


def record_env_episodes(
    env_id: str,
    env_kwargs: dict[str, Any],
    out_dir: str | Path,
    episodes: int,
    seed: int = 0,
    noise_sigma: float = 0.0,
    max_steps: int | None = None,
    progress: bool = True,
    prefix: str = "episode",
    fanout: bool = False,
    per_episode=None,
    driver: str | None = None,
) -> list[dict]:
    """The recording loop of any env with the embedded env's interface (embedded, CARLA):
    DIR/<prefix>_<i>_seed<s>/ per episode and DIR/index.json, rewritten after each one
    with the episodes DIR held before and those recorded so far. With `fanout`, each
    episode is a Ray task with its own env (`record_episode_task`; DIR must be a folder
    every node of the cluster writes to), the index in seed order as episodes finish.
    `per_episode(seed) -> (name, kwargs)`, when given, adds keyword arguments for each
    episode's env (its own env then; the name goes into the entry as `setup`).
    `driver`: a checkpoint that drives while the expert labels (`dagger.PolicyDriver`).

    Raises:
        UsageError: a seed is an evaluation seed, a bag directory already exists, or
            DIR's index.json cannot be read (nothing is recorded then).
    """
    import gymnasium
    from tqdm import tqdm

    import sim  # noqa: F401  (registers the environments)

    if episodes < 1:
        raise UsageError(f"--episodes {episodes}: record at least one episode")
    check_training_seeds(seed, episodes)
    out = Path(out_dir)
    paths = [out / f"{prefix}_{i:04d}_seed{seed + i}" for i in range(episodes)]
    previous = read_episode_index(out)
    if existing := [p for p in paths if p.exists()]:
        seeds = [e["seed"] for e in previous if isinstance(e.get("seed"), int)]
        hint = f"pass --seed {max(seeds) + 1} to add episodes after those in it, " if seeds else ""
        raise UsageError(f"{existing[0]} exists already; {hint}pick another --out, or remove it")
    out.mkdir(parents=True, exist_ok=True)
    if driver is not None and not Path(driver).is_file():
        raise UsageError(f"--driver {driver} does not exist: pass a checkpoint (.pt)")
    if fanout:
        return _record_ray(env_id, env_kwargs, out, paths, seed, noise_sigma, max_steps,
                           progress, per_episode, driver)  # fmt: skip
    if per_episode is not None:  # an env of its own per episode, as a Ray task makes it
        entries = []
        for i, path in enumerate(tqdm(paths, desc="episodes", unit="ep", disable=not progress)):
            name, extra = per_episode(seed + i)
            kw = {**env_kwargs, **extra}
            entry = record_episode_task(env_id, kw, path, seed + i, noise_sigma, max_steps, driver)
            entries.append({**entry, "setup": name})
            add_to_episode_index(out, entries)
        return entries
    env = gymnasium.make(env_id, **env_kwargs)
    entries: list[dict] = []
    try:  # close() also runs on Ctrl-C (CARLA gets its actors and settings back)
        cam = env.unwrapped.camera_info()
        dt = float(env.unwrapped.dt)
        size = {"width": int(cam["width"]), "height": int(cam["height"])}
        drive = _driver(driver, env)
        for i, path in enumerate(tqdm(paths, desc="episodes", unit="ep", disable=not progress)):
            noise = SteeringNoise(noise_sigma, dt, seed=seed + i)
            entry = record_episode(env, path, seed + i, noise, max_steps, driver=drive)
            entries.append({**entry, **size, "noise_sigma": float(noise_sigma)})
            add_to_episode_index(out, entries)
    finally:
        env.close()
    return entries


def record_episode_task(
    env_id: str,
    env_kwargs: dict[str, Any],
    path: Path,
    road_seed: int,
    noise_sigma: float,
    max_steps: int | None,
    driver: str | None = None,
) -> dict:
    """One episode in an env of its own, as the serial loop records it (its noise seeded
    by its road seed), returned as its index entry (the body of a Ray task; module-level,
    so a worker imports it by name)."""
    import gymnasium

    import sim  # noqa: F401  (registers the environments)

    env = gymnasium.make(env_id, **env_kwargs)
    try:
        cam = env.unwrapped.camera_info()
        noise = SteeringNoise(noise_sigma, float(env.unwrapped.dt), seed=road_seed)
        entry = record_episode(env, path, road_seed, noise, max_steps, driver=_driver(driver, env))
    finally:
        env.close()
    size = {"width": int(cam["width"]), "height": int(cam["height"])}
    return {**entry, **size, "noise_sigma": float(noise_sigma)}


def _driver(checkpoint: str | None, env: Any):
    """The `dagger.PolicyDriver` of `checkpoint` for `env` (None: the expert drives)."""
    if checkpoint is None:
        return None
    from steering_agent.data.dagger import PolicyDriver

    return PolicyDriver(checkpoint, env)


def _record_ray(env_id, env_kwargs, out, paths, seed, noise_sigma, max_steps, progress,
                per_episode=None, driver=None) -> list[dict]:  # fmt: skip
    """`record_env_episodes`'s loop as one Ray task per episode; entries in seed order."""
    import ray
    from tqdm import tqdm

    from steering_agent.common import raycluster

    task = ray.remote(num_cpus=1)(record_episode_task)
    setups = [per_episode(seed + i) if per_episode else (None, {}) for i in range(len(paths))]
    refs = [
        task.remote(env_id, {**env_kwargs, **extra}, path, seed + i, noise_sigma, max_steps, driver)
        for i, (path, (_, extra)) in enumerate(zip(paths, setups, strict=True))
    ]
    done: dict[int, dict] = {}
    bar = tqdm(total=len(paths), desc="episodes", unit="ep", disable=not progress)

    def finished(i: int, entry: dict) -> None:
        done[i] = entry if setups[i][0] is None else {**entry, "setup": setups[i][0]}
        add_to_episode_index(out, [done[k] for k in sorted(done)])
        bar.update(1)

    try:
        raycluster.gather(refs, on_result=finished)
    finally:
        bar.close()
    return [done[k] for k in sorted(done)]


def writer_throughput(width: int, height: int, frames: int = 200) -> float:
    """Frames per second EpisodeBagWriter writes (6 messages a frame) at this size."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    info = {
        "width": width,
        "height": height,
        "fx": width / 2,
        "fy": width / 2,
        "cx": width / 2,
        "cy": height / 2,
    }
    action = np.array([0.1, 0.5, 0.0], np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with EpisodeBagWriter(Path(tmp) / "bag", width, height, info) as writer:
            for i in range(frames):
                writer.write_step(i * 0.05, image, 8.0, action, action)
        return frames / (time.perf_counter() - start)
