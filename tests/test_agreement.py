"""One definition of an episode: the same held-out seed driven through gym (in-process,
batched policy) and over DDS (sim_bridge and agent as processes) is judged the same."""

from __future__ import annotations

import pytest

from sim.seeds import eval_seeds
from steering_agent.common.package_files import shipped_checkpoint
from steering_agent.evaluation import metrics
from steering_agent.evaluation.vec_eval import CheckpointPolicy, EvalConfig, run_episodes

ROUTE_M = 150.0


@pytest.mark.ros
@pytest.mark.slow
def test_gym_and_dds_give_the_same_episode(tmp_path, ros_domain):
    from steering_agent.ros.closed_loop import run_closed_loop

    seed = eval_seeds(1)[0]
    ckpt = shipped_checkpoint()
    cfg = EvalConfig(route_length_m=ROUTE_M, num_envs=1)
    (trace,) = run_episodes(CheckpointPolicy(ckpt, batch_size=1), [seed], cfg)
    gym = metrics.summarize_episode(trace)
    dds = run_closed_loop(
        seed, ROUTE_M, "sync", checkpoint=str(ckpt), control_type="carla",
        timeout_s=300.0, workdir=tmp_path,
    )  # fmt: skip
    assert dds["status"] == "done" and dds["reason"] == "route_complete", dds
    assert dds["interventions"] == gym.interventions
    assert dds["mean_abs_lateral_m"] == pytest.approx(gym.mean_abs_lateral_m, abs=0.01)
    assert dds["bridge"]["summary"]["steps"] == pytest.approx(gym.steps, abs=2)
