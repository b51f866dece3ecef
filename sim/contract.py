"""The contract every driving env in `sim` keeps, so the policy, the evaluation, the
recorder and the ROS sim bridge run unchanged on any of them.

Kept by `SteeringAgent/Drive-v0` (`sim.env.DriveEnv`) and `SteeringAgent/CarlaDrive-v0`
(`sim.carla_backend.CarlaDriveEnv`). Besides gymnasium's `reset`/`step`/`render`:

- `dt`: simulated seconds per step (> 0).
- `camera_info()`: the camera's pinhole intrinsics, a dict with `CAMERA_INFO_KEYS`.
- `camera_spec()`: the camera's intrinsics and mount, a dict with `CAMERA_SPEC_KEYS`:
  `camera_info()`'s values plus the lens position `x_m`, `y_m`, `height_m` (car frame:
  X forward, Y left, Z up, origin on the ground under the car's reference point) and
  `pitch_deg` (+ = looking down), `roll_deg` (+ = turned clockwise as seen from behind),
  `yaw_deg` (+ = looking left), applied roll, pitch, yaw (details: `sim.camera`).
- `vehicle_spec()`: the car, a dict with `VEHICLE_SPEC_KEYS`: `wheelbase_m` and
  `max_steer_deg`, the front wheel angle at steer = +-1 (the unit of the action's steer
  and of `info["expert_action"]`). Known after `reset()` (CARLA reads the spawned car).
- `recenter() -> (obs, info)`: put the car back on the centre line at its progress,
  heading along the road, and return what the policy sees next, as after a step.
- `render()`: the current RGB frame (uint8, H x W x 3) with render_mode "rgb_array",
  None with render_mode None.
- every `info` from reset, step and recenter has the keys of `INFO_KEYS` (more are allowed).
- observations: {"image": uint8 H x W x 3 RGB, "speed": float32 [1], m/s, clipped to
  0..MAX_SPEED_OBS}; actions: float32 [steer -1..1, throttle 0..1, brake 0..1].

Frames: right-handed (x forward, y left, yaw counter-clockwise, REP 103); actions are
[steer, throttle, brake] with CARLA's meaning (steer + = right).
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, Protocol, runtime_checkable

import numpy as np

# key -> what it holds
INFO_KEYS: dict[str, str] = {
    "lateral_error_m": "signed distance from the lane centre line, m (+ = left)",
    "heading_error_rad": "car yaw minus the centre line's heading, rad, wrapped to [-pi, pi]",
    "progress_m": "arc length driven along the route, m",
    "route_completion": "progress as a fraction of the route, 0..1",
    "off_road": "bool: the car has left the road (the episode terminates)",
    "expert_action": "float32 [steer, throttle, brake] of the privileged expert (the label)",
    "speed_mps": "car speed, m/s (>= 0)",
    "sim_time_s": "simulated seconds since reset (steps * dt)",
    "seed": "the road/episode seed (int), or None where reset had none",
    "pose": "(x, y, yaw) of the car, m and rad, right-handed world frame",
}
# keys an env may add (the embedded env does; CARLA's does not yet): consumers read them
# with info.get(key, default), never info[key]
OPTIONAL_INFO_KEYS: dict[str, str] = {
    "lane_index": "int: the ego's lane, 0 = the rightmost lane of its direction",
    "lanes_same": "int: lanes in the ego's direction",
    "lane_width_m": "width of the ego's lane, m",
    "lane_departure": "bool: a wheel is over one of the ego lane's lines",
    "collision": "bool: this step the car overlaps an object or another vehicle",
    "collision_kind": '"none", "vehicle" or "static": what the car overlaps',
    "speed_limit_mps": "the road's speed (a map's speed limit), m/s",
}
CAMERA_INFO_KEYS = ("width", "height", "fx", "fy", "cx", "cy")
CAMERA_MOUNT_KEYS = ("x_m", "y_m", "height_m", "pitch_deg", "roll_deg", "yaw_deg")
CAMERA_SPEC_KEYS = CAMERA_INFO_KEYS + CAMERA_MOUNT_KEYS
VEHICLE_SPEC_KEYS = ("wheelbase_m", "max_steer_deg")
MAX_SPEED_OBS = 60.0  # m/s: the observation's "speed" is clipped to 0..MAX_SPEED_OBS
RENDER_MODES = (None, "rgb_array")


@runtime_checkable
class DrivingEnv(Protocol):
    """What `sim`'s driving envs offer beyond `gymnasium.Env` (see module docstring)."""

    dt: float
    render_mode: str | None

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict, dict]: ...

    def step(self, action: Any) -> tuple[dict, float, bool, bool, dict]: ...

    def recenter(self) -> tuple[dict, dict]: ...

    def camera_info(self) -> dict: ...

    def camera_spec(self) -> dict: ...

    def vehicle_spec(self) -> dict: ...

    def render(self) -> np.ndarray | None: ...


class ContractError(AssertionError):
    """An env breaks the `DrivingEnv` contract; the message lists every broken rule."""


def _real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def info_problems(info: object, action_space: Any = None) -> list[str]:
    """What is wrong with one `info` dict (empty when it keeps the contract)."""
    if not isinstance(info, dict):
        return [f"info is a {type(info).__name__}, not a dict"]
    problems = [f"info lacks {key!r} ({INFO_KEYS[key]})" for key in INFO_KEYS if key not in info]
    for key in ("lateral_error_m", "heading_error_rad", "progress_m", "speed_mps", "sim_time_s"):
        if key in info and not _real(info[key]):
            problems.append(f"info[{key!r}] = {info[key]!r} is not a finite number")
    rc = info.get("route_completion")
    if "route_completion" in info and not (_real(rc) and 0.0 <= rc <= 1.0):
        problems.append(f"info['route_completion'] = {rc!r} is not within 0..1")
    if _real(info.get("speed_mps")) and info["speed_mps"] < 0:
        problems.append(f"info['speed_mps'] = {info['speed_mps']} is negative")
    if _real(info.get("sim_time_s")) and info["sim_time_s"] < 0:
        problems.append(f"info['sim_time_s'] = {info['sim_time_s']} is negative")
    if _real(info.get("heading_error_rad")) and abs(info["heading_error_rad"]) > math.pi + 1e-9:
        problems.append(f"info['heading_error_rad'] = {info['heading_error_rad']} is not wrapped")
    if "off_road" in info and not isinstance(info["off_road"], (bool, np.bool_)):
        problems.append(f"info['off_road'] = {info['off_road']!r} is not a bool")
    if "expert_action" in info:
        a = info["expert_action"]
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (3,)):
            problems.append(f"info['expert_action'] = {a!r} is not a float32 array of shape (3,)")
        elif action_space is not None and not action_space.contains(a):
            problems.append(f"info['expert_action'] = {a} is outside the action space")
    seed = info.get("seed")
    if seed is not None and not (isinstance(seed, Integral) and not isinstance(seed, bool)):
        problems.append(f"info['seed'] = {seed!r} is neither an int nor None")
    pose = info.get("pose")
    if "pose" in info and not (
        isinstance(pose, tuple) and len(pose) == 3 and all(_real(v) for v in pose)
    ):
        problems.append(f"info['pose'] = {pose!r} is not a tuple of 3 finite numbers")
    return problems


def camera_info_problems(camera_info: object, image_shape: tuple[int, ...] | None) -> list[str]:
    """What is wrong with a `camera_info()` dict, given the observed image's shape."""
    if not isinstance(camera_info, dict):
        return [f"camera_info() returned a {type(camera_info).__name__}, not a dict"]
    problems = [f"camera_info() lacks {k!r}" for k in CAMERA_INFO_KEYS if k not in camera_info]
    if problems:
        return problems
    if not all(_real(camera_info[k]) and camera_info[k] > 0 for k in CAMERA_INFO_KEYS):
        problems.append(f"camera_info() values must be positive numbers: {camera_info}")
    elif image_shape is not None and (camera_info["height"], camera_info["width"]) != tuple(
        image_shape[:2]
    ):
        problems.append(
            f"camera_info() is {camera_info['width']}x{camera_info['height']} but the "
            f"observed image is {image_shape[1]}x{image_shape[0]}"
        )
    return problems


def camera_spec_problems(camera_spec: object, camera_info: object) -> list[str]:
    """What is wrong with a `camera_spec()` dict, given the env's `camera_info()`."""
    if not isinstance(camera_spec, dict):
        return [f"camera_spec() returned a {type(camera_spec).__name__}, not a dict"]
    problems = [f"camera_spec() lacks {k!r}" for k in CAMERA_SPEC_KEYS if k not in camera_spec]
    if problems:
        return problems
    bad = [k for k in CAMERA_SPEC_KEYS if not _real(camera_spec[k])]
    if bad:
        return [f"camera_spec() values of {bad} are not finite numbers: {camera_spec}"]
    if isinstance(camera_info, dict):
        differ = [
            k for k in CAMERA_INFO_KEYS if k in camera_info and camera_info[k] != camera_spec[k]
        ]
        if differ:
            problems.append(f"camera_spec() and camera_info() disagree on {differ}")
    if not camera_spec["height_m"] > 0:
        problems.append(f"camera_spec()['height_m'] = {camera_spec['height_m']} is not > 0")
    for k in ("pitch_deg", "roll_deg", "yaw_deg"):
        if not -90.0 < camera_spec[k] < 90.0:
            problems.append(f"camera_spec()[{k!r}] = {camera_spec[k]} is not within -90..90")
    return problems


def vehicle_spec_problems(vehicle_spec: object) -> list[str]:
    """What is wrong with a `vehicle_spec()` dict (empty when it keeps the contract)."""
    if not isinstance(vehicle_spec, dict):
        return [f"vehicle_spec() returned a {type(vehicle_spec).__name__}, not a dict"]
    problems = [f"vehicle_spec() lacks {k!r}" for k in VEHICLE_SPEC_KEYS if k not in vehicle_spec]
    if problems:
        return problems
    wb, steer = vehicle_spec["wheelbase_m"], vehicle_spec["max_steer_deg"]
    if not (_real(wb) and wb > 0):
        problems.append(f"vehicle_spec()['wheelbase_m'] = {wb!r} is not a positive number")
    if not (_real(steer) and 0 < steer < 90):
        problems.append(f"vehicle_spec()['max_steer_deg'] = {steer!r} is not within (0, 90)")
    return problems


def check_contract(env: Any, seed: int = 0, steps: int = 3) -> None:
    """Drive `env` (a `DrivingEnv`, unwrapped) briefly and check the whole contract.

    Resets with `seed`, takes `steps` expert steps, re-centres, takes one more step.
    Leaves the env open. Raises `ContractError` naming every broken rule.
    """
    problems: list[str] = []
    if not isinstance(env, DrivingEnv):
        missing = [
            m
            for m in (
                "dt",
                "render_mode",
                "reset",
                "step",
                "recenter",
                "camera_info",
                "camera_spec",
                "vehicle_spec",
                "render",
            )
            if not hasattr(env, m)
        ]
        raise ContractError(f"{type(env).__name__} is no DrivingEnv: it lacks {missing}")
    dt = env.dt
    if not (_real(dt) and dt > 0):
        problems.append(f"dt = {dt!r} is not a positive number of seconds")
    if env.render_mode not in RENDER_MODES:
        problems.append(f"render_mode = {env.render_mode!r} is not one of {RENDER_MODES}")

    def check(where: str, out: object, n: int) -> tuple:
        """`out` (reset/recenter's (obs, info), step's 5-tuple) checked and returned."""
        if not (isinstance(out, tuple) and len(out) == n):
            raise ContractError(f"{where} returned {out!r}, not a tuple of {n}")
        obs, info = out[0], out[-1]
        if not env.observation_space.contains(obs):
            problems.append(f"{where}: the observation is outside the observation space")
        problems.extend(f"{where}: {p}" for p in info_problems(info, env.action_space))
        return out

    obs, info = check("reset(seed)", env.reset(seed=seed), 2)
    if info.get("sim_time_s") != 0:
        problems.append(f"reset(seed): sim_time_s = {info.get('sim_time_s')!r}, not 0")
    image_shape = getattr(obs.get("image"), "shape", None) if isinstance(obs, dict) else None
    problems.extend(camera_info_problems(env.camera_info(), image_shape))
    problems.extend(camera_spec_problems(env.camera_spec(), env.camera_info()))
    problems.extend(vehicle_spec_problems(env.vehicle_spec()))
    frame = env.render()
    if env.render_mode is None and frame is not None:
        problems.append("render() with render_mode None returned a frame, not None")
    if env.render_mode == "rgb_array" and not (
        isinstance(frame, np.ndarray)
        and frame.dtype == np.uint8
        and frame.ndim == 3
        and frame.shape[2] == 3
    ):
        problems.append(f"render() with render_mode 'rgb_array' returned {type(frame).__name__}")
    for k in range(steps):
        _, _, terminated, truncated, info = check(
            f"step {k + 1}", env.step(info["expert_action"]), 5
        )
        if _real(info.get("sim_time_s")) and not math.isclose(
            info["sim_time_s"], (k + 1) * dt, abs_tol=1e-9
        ):
            problems.append(f"step {k + 1}: sim_time_s = {info['sim_time_s']}, not {(k + 1) * dt}")
        if terminated or truncated:
            problems.append(f"step {k + 1}: the expert's episode ended already")
            break
    before = info.get("sim_time_s")
    _, info = check("recenter()", env.recenter(), 2)
    if _real(info.get("lateral_error_m")) and abs(info["lateral_error_m"]) > 0.05:
        problems.append(f"recenter(): lateral_error_m = {info['lateral_error_m']}, not ~0")
    after = info.get("sim_time_s")
    if _real(before) and _real(after) and not (before - 1e-9 <= after <= before + dt + 1e-9):
        problems.append(f"recenter(): sim_time_s went from {before} to {after} (at most one dt)")
    check("step after recenter()", env.step(info["expert_action"]), 5)
    if problems:
        raise ContractError(
            f"{type(env).__name__} breaks the env contract:\n- " + "\n- ".join(problems)
        )
