"""The post-processing chain chosen on validation: each cached run of the suite (benchmarks/suite.py ours) with its
ensemble's chain whole, each step left out in turn, or none (the floor at zero always stays); validation and test
MAE of each, and what choosing the option of the lowest validation MAE would have given on test.

    python benchmarks/chain_choice.py [--sets bikes,elec,...]

Prints a line per run and option; reads benchmarks/.suite (nothing is trained)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import suite  # noqa: E402

from rnn_core.data import make_targets  # noqa: E402
from rnn_core.forecaster import load_model, split_targets  # noqa: E402
from rnn_core.postprocess import NonNegative  # noqa: E402


def mae(pred: np.ndarray, target: np.ndarray) -> float:
    ok = np.isfinite(target)
    return float(np.abs(pred - target)[ok].mean())


def options(model) -> list[tuple]:  # noqa: ANN001
    """(label, steps) of the chain whole, each step left out, and none; the floor at zero in each."""
    floor = tuple(s for s in model.point_steps if isinstance(s, NonNegative))
    core = tuple(s for s in model.point_steps if not isinstance(s, NonNegative))
    subsets = [core, *(core[:i] + core[i + 1:] for i in range(len(core)) if len(core) > 1), ()]
    return [("+".join(type(s).__name__ for s in sub) or "none", sub + floor) for sub in subsets]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", default=",".join(suite.SUITE))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for name in args.sets.split(","):
        member = suite.SUITE[name]
        for h in member.horizons:
            _, frame, cfg, origins = suite.problem(member, h)
            model = load_model(suite.CACHE / "runs" / f"{name}-h{h}-s{args.seed}" / "ensemble.pt")
            vo, vy = split_targets(frame, model.data_config, "val")
            ty = make_targets(frame[cfg.dataset.target].to_numpy(np.float64), origins, h)
            rows = [(label, mae(model.with_steps(st).forecast(frame, vo), vy),
                     mae(model.with_steps(st).forecast(frame, origins), ty)) for label, st in options(model)]
            best = min(rows, key=lambda r: r[1])
            print(f"{name} h={h}: whole chain val {rows[0][1]:.4g} test {rows[0][2]:.4g} | chosen on validation: "
                  f"{best[0]}, test {best[2]:.4g} ({100 * (best[2] / rows[0][2] - 1):+.1f} %)", flush=True)
            for label, v, t in rows:
                print(f"    {label:<45} val {v:.4g} test {t:.4g}", flush=True)


if __name__ == "__main__":
    main()
