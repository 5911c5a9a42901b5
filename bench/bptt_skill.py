"""Skill and fit time of truncated backprop (`training.bptt_steps`) against the default on
one design-size selection fold, several seeds (never a test):

    python bench/bptt_skill.py [--steps 63,21] [--seeds 3] [--fold 0] [--json PATH]

The fits run one after another in this process with one torch thread (bench/run.py's
`_fit_design_fold`: the net's own MASE and CRPS on the fold's test origins, its best
validation loss on its own tail); compare the paths, not the absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import DESIGN_SPEC, _fit_design_fold  # noqa: E402

from cbi_toolkit.backtest import labelled_samples  # noqa: E402
from cbi_toolkit.run.prepare import prepare  # noqa: E402
from cbi_toolkit.spec import load_spec  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="63,21", help="bptt_steps to try beside the default")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    spec = load_spec(DESIGN_SPEC)
    _, samples = prepare(spec, None)
    samples = labelled_samples(samples)
    paths = {"default": {}, **{f"bptt_{k}": {"training.bptt_steps": int(k)}
                               for k in args.steps.split(",")}}
    out = {"fold": args.fold, "seeds": args.seeds}
    for seed in range(args.seeds):  # seed by seed, so a stopped run still compares paths
        for name, over in paths.items():
            r = _fit_design_fold(spec, samples, args.fold, over, seed, threads=1)
            out.setdefault(name, {"fits": []})["fits"].append(r)
            print(name, json.dumps(r), flush=True)
    for name in paths:
        fits = out[name]["fits"]
        out[name].update({k: round(float(np.mean([r[k] for r in fits])), 5)
                          for k in ("fit_s", "epochs", "best_valid_loss", "mase", "crps")})
        print(name, json.dumps({k: v for k, v in out[name].items() if k != "fits"}), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
