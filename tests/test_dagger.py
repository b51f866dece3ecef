"""One DAgger round from the CLI, on tiny data: drive closed loop with a checkpoint and
record (the expert labels what the agent saw, interventions marked), fine-tune with
`train --init`, then drive the fine-tuned checkpoint (docs/ros_data.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim.seeds import eval_seeds
from steering_agent.cli import main

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.usefixtures("domain")]


def _bag_topics(bag: Path) -> dict[str, list]:
    """{topic: [(header stamp ns or None, message), ...]} of a recorded bag."""
    from rosbags.highlevel import AnyReader

    from steering_agent.interfaces.stamps import stamp_to_ns

    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for conn, _t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            header = getattr(msg, "header", msg if conn.msgtype.endswith("Header") else None)
            stamp = stamp_to_ns(header.stamp) if header is not None else None
            out.setdefault(conn.topic, []).append((stamp, msg))
    return out


@pytest.fixture
def checkpoint(tmp_path):
    """An untrained network of the default size (`train --init` builds the default size:
    a smaller one's weights would not load)."""
    import torch

    from steering_agent.policy.checkpoint import save_checkpoint
    from steering_agent.policy.model import ModelConfig, SteeringNet
    from steering_agent.policy.preprocess import PreprocessConfig

    torch.manual_seed(0)
    cfg = ModelConfig()
    prov = {"torch_version": str(torch.__version__), "target_speed_mps": 6.0}
    return save_checkpoint(tmp_path / "start.pt", SteeringNet(cfg), cfg, PreprocessConfig(), prov)


def test_one_dagger_round_drive_record_finetune_drive(tmp_path, checkpoint):
    from steering_agent.interfaces import topics

    rec = tmp_path / "rec"
    # 1. drive with the checkpoint and record: a random network leaves the lane, so the
    # bag holds interventions (re-centred) beside the expert's labels of every frame
    out = tmp_path / "drive.json"
    rc = main(["closed-loop", "--seed", str(eval_seeds(1)[0]), "--route-length-m", "30",
               "--checkpoint", str(checkpoint), "--control-type", "carla", "--timeout", "240",
               "--record", str(rec), "--workdir", str(tmp_path / "w"),
               "--out", str(out)])  # fmt: skip
    result = json.loads(out.read_text())
    assert rc == 0 and result["status"] == "done", result
    bags = sorted(p.parent for p in rec.rglob("metadata.yaml"))
    assert len(bags) == 1, list(rec.rglob("*"))
    msgs = _bag_topics(bags[0])
    images = {s for s, _ in msgs[topics.IMAGE]}
    labels = {s for s, _ in msgs[topics.EXPERT_CONTROL]}
    # the expert labelled the frames the agent saw (the recorder may join a frame late)
    assert len(images & labels) >= 0.9 * len(images) > 0, (len(images), len(labels))
    marked = msgs.get(topics.INTERVENTION, [])
    assert result["interventions"] >= 1, result  # seed 0 of a random network leaves the lane
    assert len(marked) == result["interventions"], (len(marked), result["interventions"])
    assert all(s in images and m.frame_id in ("recenter", "end") for s, m in marked)
    assert topics.LATERAL_ERROR in msgs and topics.CONTROL in msgs

    # 2. fine-tune from the checkpoint on the recorded drive (labels: the expert topic)
    tuned = tmp_path / "tuned.pt"
    rc = main(["train", "--data", str(rec), "--init", str(checkpoint), "--out", str(tuned),
               "--epochs", "1", "--seq-len", "8", "--batch", "2", "--val-fraction", "0",
               "--no-cache", "--no-progress", "--label-topic", topics.EXPERT_CONTROL])  # fmt: skip
    assert rc == 0 and tuned.is_file()

    # 3. the fine-tuned checkpoint loads and drives
    from steering_agent.policy.checkpoint import load_checkpoint

    load_checkpoint(str(tuned))
    rc = main(["drive", "--policy", str(tuned), "--route-length-m", "10", "--no-video",
               "--out", str(tmp_path / "eval")])  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "eval" / "drive.json").read_text())
    assert list(doc["policies"]) == ["tuned"]
