"""`cbi-run`: parse arguments, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from cbi_toolkit.console import PrintedEvents, exit_code, guarded
from cbi_toolkit.errors import CbiError
from cbi_toolkit.run.options import RunOptions

EPILOG = """examples:
  cbi-run specs/zl_1m.yaml                 walk-forward, final fit, forecast, write the sink
  cbi-run --check specs/zl_1m.yaml         validate the spec only
  cbi-run specs/zl_1m.yaml --stage data    load, align, build features; print a summary
  cbi-run --schema > spec.schema.json      JSON Schema of the spec, for editors
  cbi-run --predict runs/<run_id>          forecast from a saved run without retraining
  cbi-run --evaluate runs/<run_id> --data-dir DIR --since 2024-01-01
  cbi-run --resume runs/<run_id>           continue an interrupted run from its checkpoints
  cbi-run --sink-only runs/<run_id>        write a finished run's forecasts to the sink

output paths in a spec (runs_dir, sink.path) must stay inside the working directory;
--runs-dir and --sink on the command line may point anywhere.

exit codes: 0 ok, 2 bad input (spec, data, credentials, sink), 3 deploy gate failed,
  130 interrupted (resume with --resume)

next: start with `cbi-run specs/zl_1m_quick.yaml` (minutes on a CPU); it prints its run folder,
  runs/<run_id>/, whose report.md shows the metrics and plots (fan_chart.png, skill.png);
  then `cbi-run --predict runs/<run_id>` forecasts from newer data. Docs: docs/running.md"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cbi-run", description="Forecast commodity futures prices from a YAML spec.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", help="path to the spec YAML")
    p.add_argument("--check", action="store_true", help="validate the spec and exit")
    p.add_argument("--schema", action="store_true", help="print the spec's JSON Schema and exit")
    p.add_argument("--stage", choices=["data", "features", "full"], default="full",
                   help="stop after this stage (default: full)")
    p.add_argument("--data-dir", help="data directory (default: $CBI_DATA_DIR, else "
                                      "../shared/data beside the checkout)")
    p.add_argument("--runs-dir", help="where run folders go (default: the spec's runs_dir)")
    p.add_argument("--sink", help="override the spec's sink, e.g. duckdb:///path/f.duckdb or "
                                  "bigquery://PROJECT/DATASET")
    p.add_argument("--predict", metavar="RUN_DIR", help="forecast from a saved run")
    p.add_argument("--evaluate", metavar="RUN_DIR", help="score a saved run on newer data")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its checkpoints")
    p.add_argument("--sink-only", metavar="RUN_DIR",
                   help="write a finished run's forecasts to the sink (after a sink failure)")
    p.add_argument("--since", help="with --evaluate: first origin date to score (YYYY-MM-DD)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key, e.g. --set training.max_epochs=3 (YAML value)")
    p.add_argument("-q", "--quiet", action="store_true", help="less output")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["training.max_epochs=3"]`` -> ``{"training.max_epochs": 3}`` (values parsed as YAML)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CbiError(f"--set {item!r}: expected KEY=VALUE, e.g. training.max_epochs=3")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CbiError(f"--set {key.strip()}: the value is not plain YAML ({problem}); "
                           "quote it or write a number, string, list or mapping") from None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    # libraries log warnings only (no "generated new fontManager"); the toolkit at ``level``
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("cbi_toolkit").setLevel(level)
    return guarded(lambda: _dispatch(args))


#: The ways of running on a saved run folder, and the options each reads; any other option
#: given with one would do nothing, so it is refused rather than silently ignored.
SAVED_RUN_MODES = {
    "predict": {"data_dir", "sink"},
    "evaluate": {"data_dir", "since"},
    "resume": {"data_dir", "sink"},
    "sink_only": {"sink"},
}
WHY_IGNORED = {
    "spec": "a saved run brings its own spec.yaml; drop SPEC",
    "set": "a saved run keeps the spec it was trained with; to change it, rerun "
           "`cbi-run SPEC --set KEY=VALUE`",
    "check": "--check validates a spec: `cbi-run --check SPEC`",
    "stage": "--stage stops a spec run early: `cbi-run SPEC --stage data`",
    "runs_dir": "it works in the run folder it is given",
    "since": "only --evaluate scores from a date",
    "sink": "it writes no forecasts to a sink",
    "data_dir": "it writes the forecasts the run saved and reads no data",
}


def refuse_ignored_options(args: argparse.Namespace) -> None:
    """Raise CbiError for an option the chosen way of running would ignore."""
    modes = [m for m in SAVED_RUN_MODES if getattr(args, m)]
    flags = [f"--{m.replace('_', '-')}" for m in modes]
    if len(modes) > 1:
        raise CbiError(f"{' and '.join(flags)}: choose one way of running on a saved run")
    given = {"spec": args.spec, "set": args.set, "check": args.check,
             "stage": args.stage != "full", "runs_dir": args.runs_dir, "since": args.since,
             "sink": args.sink, "data_dir": args.data_dir}
    reads = SAVED_RUN_MODES[modes[0]] if modes else set(given) - {"since"}
    for option, value in given.items():
        if value and option not in reads:
            name = "SPEC" if option == "spec" else f"--{option.replace('_', '-')}"
            raise CbiError(f"{name} does nothing {'with ' + flags[0] if modes else 'in a spec run'}"
                           f": {WHY_IGNORED[option]}")


def run_options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(data_dir=args.data_dir, runs_dir=args.runs_dir,
                      sink=args.sink, quiet=args.quiet)


def _dispatch(args: argparse.Namespace) -> int:
    if args.schema:
        from cbi_toolkit.spec import spec_json_schema

        print(json.dumps(spec_json_schema(), indent=2))
        return 0
    refuse_ignored_options(args)
    if args.resume:
        from cbi_toolkit.pooled_run import refuse_pooled_run

        refuse_pooled_run(args.resume, "--resume")
    events = PrintedEvents()
    if args.predict:
        from cbi_toolkit.run.saved import predict_run

        return exit_code(predict_run(args.predict, run_options(args), events))
    if args.evaluate:
        from cbi_toolkit.run.saved import evaluate_run

        result = evaluate_run(args.evaluate, args.since, args.data_dir, events)
        events.evaluated(result.summary, result.horizons)
        print(f"scored origins from {result.since:%Y-%m-%d}; table saved to {result.path}")
        return 0
    if args.resume:
        from cbi_toolkit.run.saved import resume_run

        return exit_code(resume_run(args.resume, run_options(args), events))
    if args.sink_only:
        from cbi_toolkit.run.saved import sink_only

        return exit_code(sink_only(args.sink_only, args.sink, events))
    if not args.spec:
        raise CbiError("no spec given; usage: cbi-run SPEC.yaml (see cbi-run --help)")
    from cbi_toolkit.spec import load_spec

    spec = load_spec(args.spec, overrides=parse_overrides(args.set))
    if args.check:
        from cbi_toolkit.sinks.resolve import sink_config

        sink_config(spec.sink, args.sink)  # --sink is part of what --check validates
        print(f"{args.spec}: ok ({spec.name}: horizons {', '.join(spec.horizons)}, "
              f"window {spec.window}, {len(spec.data)} sources, {len(spec.features)} features)")
        return 0
    from cbi_toolkit.run.stages import run

    return exit_code(run(spec, run_options(args), args.stage, events))


if __name__ == "__main__":
    sys.exit(main())
