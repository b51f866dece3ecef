"""Average the weights of checkpoints of one architecture (a "model soup").

    python tools/average_checkpoints.py --out runs/soup.pt A.pt B.pt [--weights 0.5 0.5] \
        [--set target_speed_mps=10.0 --set target_speed_note="..."]

The inputs must share the model and preprocessing configs (fine-tunings of one lineage:
DAgger rounds started from each other). The output keeps the first input's provenance,
with `averaged_from` (paths and weights) added and each `--set KEY=VALUE` written into
it (a number where VALUE reads as one); it has no training state.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steering_agent.policy.checkpoint import (
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)


def average(
    paths: list[str], weights: list[float] | None, out: str, extra: dict | None = None
) -> Path:
    """Writes the weighted mean of `paths`' weights to `out` (provenance: the first's,
    `averaged_from`, then `extra`); returns its path."""
    if len(paths) < 2:
        raise CheckpointError("give at least two checkpoints to average")
    weights = weights or [1.0 / len(paths)] * len(paths)
    if len(weights) != len(paths) or min(weights) < 0 or abs(sum(weights) - 1.0) > 1e-6:
        raise CheckpointError(
            f"--weights: {len(paths)} non-negative numbers summing to 1 (got {weights})"
        )
    ckpts = [load_checkpoint(p) for p in paths]
    first = ckpts[0]
    for c in ckpts[1:]:
        if c.model_config != first.model_config or c.preprocess_config != first.preprocess_config:
            raise CheckpointError(
                f"{c.path} and {first.path} have different model or preprocessing "
                "configs; only checkpoints of one architecture and input can be averaged"
            )
    state = {}
    for key, tensor in first.state_dict.items():
        if tensor.is_floating_point():
            state[key] = sum(w * c.state_dict[key] for w, c in zip(weights, ckpts, strict=True))
        else:  # integer buffers (counters): the first checkpoint's
            state[key] = tensor
    model = first.build_model()
    model.load_state_dict(state, strict=True)
    prov = dict(first.provenance)
    pairs = zip(paths, weights, strict=True)
    prov["averaged_from"] = [{"path": str(p), "weight": w} for p, w in pairs]
    prov.pop("date", None)
    prov.update(extra or {})
    return save_checkpoint(out, model, first.model_config, first.preprocess_config, prov)


def _pairs(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"average_checkpoints: --set {item!r}: write KEY=VALUE")
        try:
            out[key] = float(value)
        except ValueError:
            out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", nargs="+", type=float, default=None)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    try:
        path = average(args.checkpoints, args.weights, args.out, _pairs(args.set))
    except CheckpointError as e:
        print(f"average_checkpoints: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
