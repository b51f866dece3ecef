"""Link the episodes of several recording folders into one, for `steering-agent train`.

`train --data` reads one folder (its index.json and bags). This makes OUT with a
symbolic link per bag and an index.json listing every episode of every SOURCE (each entry
as its source's index has it, the source's shared fields copied in). Nothing is copied;
the frame cache keys resolve the links, so frames cached from a source are reused.

    python tools/link_datasets.py --out data/merged data/train_v2 data/dagger_v3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from steering_agent.data.episode_bags import INDEX_FILE, read_episode_index  # noqa: E402


def link(out: Path, sources: list[Path]) -> list[dict]:
    """The merged entries; OUT gets one link per bag (names prefixed by the source's)."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {out} is not empty: pick a new folder")
    entries = []
    plan = []
    for src in sources:
        for e in read_episode_index(src):
            name = f"{src.name}__{e['bag']}"
            target = (src / e["bag"]).resolve()
            if not target.exists():
                raise SystemExit(f"{src}: episode bag {e['bag']} is missing")
            plan.append((out / name, target))
            entries.append({**e, "bag": name, "source": str(src)})
    out.mkdir(parents=True, exist_ok=True)
    for path, target in plan:
        path.symlink_to(target, target_is_directory=target.is_dir())
    (out / INDEX_FILE).write_text(json.dumps({"episodes": entries}, indent=1), "utf8")
    return entries


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sources", nargs="+", type=Path, help="recording folders")
    ap.add_argument("--out", type=Path, required=True, help="new folder of links")
    args = ap.parse_args()
    entries = link(args.out, args.sources)
    frames = sum(int(e.get("frames", 0)) for e in entries)
    print(f"{args.out}: {len(entries)} episodes, {frames} frames from {len(args.sources)} folders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
