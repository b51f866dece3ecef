"""Simulators and gymnasium environments for steering_agent.

Importing `sim` registers the environments (string entry points, so nothing heavy loads
until `gymnasium.make`) and imports neither rclpy nor torch. Both keep the env contract of
`sim.contract` (`DrivingEnv`, `INFO_KEYS`, `check_contract`).
"""

from gymnasium.envs.registration import register, registry

from sim.contract import (
    CAMERA_INFO_KEYS,
    CAMERA_SPEC_KEYS,
    INFO_KEYS,
    OPTIONAL_INFO_KEYS,
    VEHICLE_SPEC_KEYS,
    DrivingEnv,
    check_contract,
)
from sim.seeds import EVAL_SEED_START, eval_seeds, is_eval_seed

__all__ = [
    "CAMERA_INFO_KEYS",
    "CAMERA_SPEC_KEYS",
    "EVAL_SEED_START",
    "INFO_KEYS",
    "OPTIONAL_INFO_KEYS",
    "VEHICLE_SPEC_KEYS",
    "DrivingEnv",
    "check_contract",
    "eval_seeds",
    "is_eval_seed",
]

if "SteeringAgent/Drive-v0" not in registry:
    register(id="SteeringAgent/Drive-v0", entry_point="sim.env:DriveEnv")
if "SteeringAgent/CarlaDrive-v0" not in registry:
    # A CARLA server's frames and physics are not reproducible from a seed alone.
    register(
        id="SteeringAgent/CarlaDrive-v0",
        entry_point="sim.carla_backend:CarlaDriveEnv",
        nondeterministic=True,
    )
