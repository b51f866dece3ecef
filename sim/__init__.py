"""Simulators and gymnasium environments for steering_agent.

Importing `sim` registers the environments (string entry points, so nothing heavy loads
until `gymnasium.make`) and imports neither rclpy nor torch.
"""

from gymnasium.envs.registration import register, registry

from sim.seeds import EVAL_SEED_START, eval_seeds, is_eval_seed

__all__ = ["EVAL_SEED_START", "eval_seeds", "is_eval_seed"]

if "SteeringAgent/Drive-v0" not in registry:
    register(id="SteeringAgent/Drive-v0", entry_point="sim.env:DriveEnv")
if "SteeringAgent/CarlaDrive-v0" not in registry:
    register(id="SteeringAgent/CarlaDrive-v0", entry_point="sim.carla_backend:CarlaDriveEnv")
