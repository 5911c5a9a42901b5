"""`cbi-grid`: parse arguments, run the search, print."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Sequence

from cbi_toolkit.console import PrintedEvents, exit_code, guarded
from cbi_toolkit.errors import CbiError
from cbi_toolkit.search.grid import load_grid
from cbi_toolkit.search.runner import format_leaderboard, run_search

# ---------------------------------------------------------------------------
# cbi-grid

EPILOG = """examples:
  cbi-grid specs/grids/zl_1m_small.yaml                  run the grid, print and save the leaderboard
  cbi-grid specs/grids/zl_1m_small.yaml --n-jobs 4       four local worker processes
  cbi-grid specs/grids/zl_1m_small.yaml --scheduler tcp://host:8786   on a Dask cluster
  cbi-grid specs/grids/zl_1m_small.yaml --check          validate and list the variants only
  cbi-grid specs/grids/zl_1m_small.yaml --run-best       then run the best variant like cbi-run

Re-running resumes: variants already in <output>/results.jsonl are skipped.
exit codes: 0 ok, 2 bad input (grid, spec, data), 3 best variant failed its deploy gate"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cbi-grid", description="Grid or random search over spec "
                                "variants, ranked on the same walk-forward folds.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("grid", help="grid YAML (base: + grid:), or a spec with a search: section")
    p.add_argument("--data-dir", help="data directory (default: $CBI_DATA_DIR, else "
                                      "../shared/data beside the checkout)")
    p.add_argument("--output", help="search folder (default: the grid's output:, else "
                                     "<runs_dir>/search/<grid name>)")
    p.add_argument("--n-jobs", type=int, help="local worker processes (default: the grid's "
                                              "n_jobs, 1); -1: all cores")
    p.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786")
    p.add_argument("--yes", action="store_true", help="run even if the grid exceeds max_variants")
    p.add_argument("--check", action="store_true", help="validate the grid, list variants, exit")
    p.add_argument("--run-best", action="store_true", help="then run the best variant (cbi-run)")
    p.add_argument("--runs-dir", help="with --run-best: where the run folder goes")
    p.add_argument("--sink", help="with --run-best: override the spec's sink")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


class GridInterrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt
    """Ctrl-C during a search. Not a KeyboardInterrupt, which skorch takes as "stop
    training early": the variant would be scored and stored half-trained (cbi-run
    does the same, see cbi_toolkit.run.interrupts.RunInterrupted)."""


def _raise_interrupt(signum, frame):  # noqa: ARG001
    raise GridInterrupted


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _raise_interrupt) if in_main else None
    try:
        return guarded(lambda: _interruptible(args), interrupted=INTERRUPTED_TEXT)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


INTERRUPTED_TEXT = ("error: interrupted; finished variants are stored, re-run the same command "
                    "to resume")


def _interruptible(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except GridInterrupted:
        raise KeyboardInterrupt from None


def _main(args: argparse.Namespace) -> int:
    if args.n_jobs is not None and (args.n_jobs == 0 or args.n_jobs < -1):
        raise CbiError(f"--n-jobs {args.n_jobs}: use 1 (in this process), N workers or -1 "
                       "(all cores)")
    grid = load_grid(args.grid, yes=args.yes)
    if args.check:
        print(f"{args.grid}: ok: {len(grid.variants)} variants of {grid.base_source} "
              f"({grid.config.method}), ranked by {grid.config.metric} on {grid.horizon}")
        for v in grid.variants:
            print(f"  {v.hash} {v.label()}")
        return 0
    start = time.perf_counter()
    result = run_search(grid, args.data_dir, output=args.output, n_jobs=args.n_jobs,
                        scheduler=args.scheduler, quiet=args.quiet)
    print(format_leaderboard(grid, result.leaderboard))
    h, metric = grid.horizon, grid.config.metric
    print("baselines on the same folds: " + ", ".join(
        f"{r['model']} {metric} {r[f'{metric}_{h}']:.4f}" for _, r in result.baselines.iterrows()))
    print(f"{len(result.ran)} evaluated, {len(result.skipped)} from the store, "
          f"{math.ceil(time.perf_counter() - start)} s; leaderboard: {result.output}/leaderboard.csv "
          f"and .md; best spec: {result.best_spec_path}")
    if not args.run_best:
        return 0
    from cbi_toolkit.run.options import RunOptions
    from cbi_toolkit.run.stages import run
    from cbi_toolkit.spec import load_spec

    options = RunOptions(data_dir=args.data_dir, runs_dir=args.runs_dir, sink=args.sink,
                         quiet=args.quiet)
    return exit_code(run(load_spec(result.best_spec_path), options, events=PrintedEvents()))


if __name__ == "__main__":
    sys.exit(main())
