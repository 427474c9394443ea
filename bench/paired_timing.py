"""Wall time of one training run, this checkout against another commit's source, in alternating pairs
(so that a machine whose load drifts slows both sides alike). Prints a table and the median ratio.

    git worktree add --detach /tmp/baseline 4cd81e1
    OMP_NUM_THREADS=1 python bench/paired_timing.py --baseline /tmp/baseline/src --pairs 4

Each run is a fresh process (`latefusion train`, naive fusion on avdigits, 4 epochs by default)
importing latefusion from the given source folder; its time is the run's own `wall_time_s`
(result.json: data, model, training, evaluation; not the interpreter's start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1] / "src"


def one_run(source: Path, out: Path, settings: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    command = [sys.executable, "-m", "latefusion.cli", "train", "--out", str(out), *(a for s in settings for a in ("--set", s))]
    subprocess.run(command, env=env, check=True, capture_output=True)
    return json.loads((out / "result.json").read_text())["wall_time_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the other commit's src/ folder")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--set", dest="settings", action="append",
                        default=["data.name=avdigits", "method.name=naive", "train.epochs=4", "train.progress=false"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for pair in range(args.pairs):
            # Alternate which side goes first, so neither always meets a warmer (or busier) machine.
            order = [("baseline", args.baseline), ("this", HERE)][:: 1 if pair % 2 == 0 else -1]
            times = {name: one_run(source, Path(scratch) / f"{name}-{pair}", args.settings) for name, source in order}
            rows.append((times["baseline"], times["this"]))
    print(f"| pair | baseline ({args.baseline}) s | this checkout s | ratio |\n|---:|---:|---:|---:|")
    for i, (base, this) in enumerate(rows):
        print(f"| {i} | {base:.2f} | {this:.2f} | {this / base:.3f} |")
    print(f"median ratio (this / baseline): {statistics.median(t / b for b, t in rows):.3f}")


if __name__ == "__main__":
    main()
