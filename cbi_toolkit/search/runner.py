"""Running a search (locally or on Dask), the baselines, the leaderboard and its outputs."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cbi_toolkit.compute import execution
from cbi_toolkit.errors import CbiError
from cbi_toolkit.search.grid import Grid, Variant
from cbi_toolkit.search.scoring import (
    METRICS,
    ChunkedGridSearchCV,
    ForecastScorer,
    group_key,
    param_grid_for,
)
from cbi_toolkit.search.store import RESULTS_FILE, STORE_VERSION, append_row, load_store
from cbi_toolkit.spec import Spec
from cbi_toolkit.walkforward import walk_forward

# ---------------------------------------------------------------------------
# running

@dataclass
class _Group:
    variants: list[Variant]
    spec: Spec
    samples: Any = None


@dataclass
class SearchResult:
    leaderboard: pd.DataFrame
    output: Path
    best: Variant
    best_spec_path: Path
    ran: list[str]  # variant hashes evaluated in this call
    skipped: list[str]  # variant hashes taken from the store
    baselines: pd.DataFrame  # random walk, drift, ridge on the same folds


def prepare_groups(grid: Grid, data_dir: str | None) -> tuple[list[_Group], str, int]:
    """Samples per group, cut to the labelled origins all groups share.
    Returns the groups, the fingerprint of the evaluation origins and their count."""
    from cbi_toolkit.backtest import labelled_samples
    from cbi_toolkit.run.prepare import prepare

    groups: dict[str, _Group] = {}
    for v in grid.variants:
        groups.setdefault(group_key(v.spec), _Group([], v.spec)).variants.append(v)
    for g in groups.values():
        _, samples = prepare(g.spec, data_dir)
        g.samples = labelled_samples(samples)
    common = None
    for g in groups.values():
        common = g.samples.dates if common is None else common.intersection(g.samples.dates)
    if common is None or len(common) == 0:
        raise CbiError(f"{grid.source}: the variants share no labelled origin dates")
    digest = hashlib.sha256()
    for g in groups.values():
        g.samples = g.samples.subset(np.flatnonzero(g.samples.dates.isin(common)))
        digest.update(g.samples.dates.asi8.tobytes())
        digest.update(np.ascontiguousarray(g.samples.price, dtype=np.float64).tobytes())
        digest.update(np.ascontiguousarray(g.samples.y, dtype=np.float64).tobytes())
    return list(groups.values()), digest.hexdigest()[:12], len(common)


def run_search(grid: Grid, data_dir: str | None = None, *, output: str | Path | None = None,
               n_jobs: int | None = None, scheduler: str | None = None,
               on_variant: Callable[[dict[str, Any]], None] | None = None,
               quiet: bool = False) -> SearchResult:
    """Evaluate every variant not yet in the store; write the leaderboard and the best spec."""
    out = grid.output_dir(str(output) if output else None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CbiError(f"cannot create the search folder {out} ({exc.strerror})") from None
    store_path = out / RESULTS_FILE
    groups, fingerprint, n_origins = prepare_groups(grid, data_dir)
    store = load_store(store_path)
    say = (lambda *a: None) if quiet else print
    say(f"search {grid.name}: {len(grid.variants)} variants in {len(groups)} data group(s), "
        f"{n_origins} common labelled origins; store {store_path}")
    scheduler = scheduler or (grid.config.dask.scheduler if grid.config.dask else None)
    n_jobs = n_jobs if n_jobs is not None else grid.config.n_jobs
    ran: list[str] = []
    skipped: list[str] = []
    done = [0]
    with execution(n_jobs, scheduler) as (jobs, slots):
        for g in groups:
            todo = []
            for v in g.variants:
                if _key(v, fingerprint) in store:
                    skipped.append(v.hash)
                else:
                    todo.append(v)
            done[0] += len(g.variants) - len(todo)
            if not todo:
                continue
            search = make_search(g.spec, g.samples, [v.spec for v in todo], n_jobs=jobs,
                                 chunk_size=slots)
            n_splits = g.spec.validation.n_splits

            def on_chunk(results, first, count, todo=todo, g=g, n_splits=n_splits):
                for i in range(first, first + count):
                    v = todo[i]
                    row = _row(grid, v, results, i, n_splits, fingerprint, n_origins, g)
                    append_row(store_path, row)
                    store[row["key"]] = row
                    ran.append(v.hash)
                    done[0] += 1
                    say(f"[{done[0]}/{len(grid.variants)}] {v.hash} {v.label()}: "
                        f"{grid.config.metric} {row[f'{grid.config.metric}_{grid.horizon}']:.4f}"
                        f" (fit {row['fit_seconds']:.1f} s/fold)")
                    if on_variant is not None:
                        on_variant(row)

            search.set_params(on_chunk=on_chunk)
            search.fit(g.samples.X, g.samples.y)
    if skipped:
        say(f"skipped {len(skipped)} variant(s) already in the store")
    rows = [store[_key(v, fingerprint)] for v in grid.variants]
    board = leaderboard(grid, rows)
    refs = baseline_scores(grid, groups[0])
    best = next(v for v in grid.variants if v.hash == board.iloc[0]["variant"])
    best_path = write_outputs(grid, board, best, out, refs)
    return SearchResult(board, out, best, best_path, ran, skipped, refs)


def baseline_scores(grid: Grid, group: _Group) -> pd.DataFrame:
    """The baselines (random walk, drift, ridge) on the same folds and origins,
    scored by the same scorer: the reference for the leaderboard."""
    from sklearn.model_selection import cross_validate

    from cbi_toolkit.pipeline import build_baselines

    samples = group.samples
    cv = walk_forward(group.spec, len(samples), samples.dates, part="selection")
    rows = []
    for name, pipe in build_baselines(group.spec).items():
        res = cross_validate(pipe, samples.X, samples.y, cv=cv, scoring=ForecastScorer(samples),
                             n_jobs=1, error_score="raise")
        row: dict[str, Any] = {"model": name}
        for m in METRICS:
            key = f"test_{m}_{grid.horizon}"
            row[f"{m}_{grid.horizon}"] = float(np.mean(res[key]))
            if m != "direction_n":
                row[f"{m}_{grid.horizon}_std"] = float(np.std(res[key]))
        row["fit_seconds"] = float(np.mean(res["fit_time"]))
        rows.append(row)
    return pd.DataFrame(rows)


def make_search(spec: Spec, samples, variant_specs: Sequence[Spec], n_jobs: int = 1,
                chunk_size: int = 1) -> ChunkedGridSearchCV:
    """The sklearn search of variants that share ``samples``: GridSearchCV over
    the nested pipeline parameters in which they differ, on walk-forward folds."""
    from cbi_toolkit.pipeline import build_pipeline

    return ChunkedGridSearchCV(
        build_pipeline(variant_specs[0], verbose=0), param_grid_for(variant_specs),
        scoring=ForecastScorer(samples),
        cv=walk_forward(spec, len(samples), samples.dates, part="selection"), n_jobs=n_jobs,
        refit=False, error_score="raise", chunk_size=chunk_size)


def _key(v: Variant, fingerprint: str) -> str:
    return f"{v.hash}-{fingerprint}"


def _row(grid: Grid, v: Variant, results: dict, i: int, n_splits: int, fingerprint: str,
         n_origins: int, g: _Group) -> dict[str, Any]:
    row: dict[str, Any] = {
        "store_version": STORE_VERSION, "key": _key(v, fingerprint), "variant": v.hash,
        "evaluation": fingerprint, "spec_name": v.spec.name,
        "params": v.params, "pipeline_params": {k: _plain(val) for k, val in results["params"][i].items()},
        "folds": n_splits, "origins": n_origins,
        "first_origin": f"{g.samples.dates[0]:%Y-%m-%d}",
        "last_origin": f"{g.samples.dates[-1]:%Y-%m-%d}",
        "fit_seconds": float(results["mean_fit_time"][i]),
        "fit_seconds_std": float(results["std_fit_time"][i]),
        "score_seconds": float(results["mean_score_time"][i]),
        "finished_at": pd.Timestamp.now(tz="UTC").isoformat(),
    }
    names = sorted({k.removeprefix("mean_test_") for k in results if k.startswith("mean_test_")})
    for name in names:
        row[name] = float(results[f"mean_test_{name}"][i])
        row[f"{name}_std"] = float(results[f"std_test_{name}"][i])
        row[f"{name}_folds"] = [float(results[f"split{k}_test_{name}"][i]) for k in range(n_splits)]
    return row


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ---------------------------------------------------------------------------
# leaderboard and outputs

def leaderboard(grid: Grid, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per variant, best first: grid values, every metric's mean over folds
    and its fold spread (``_std``), fit time per fold."""
    metric = f"{grid.config.metric}_{grid.horizon}"
    records = []
    for r in rows:
        rec: dict[str, Any] = {"variant": r["variant"]}
        rec.update({k: _cell(v) for k, v in r["params"].items()})
        horizons = sorted({k.rsplit("_", 1)[1] for k in r if k.startswith("mase_")
                           and not k.endswith(("_std", "_folds"))},
                          key=lambda h: (h != grid.horizon, h))
        for h in horizons:
            for m in sorted(METRICS, key=lambda m: m != grid.config.metric):
                rec[f"{m}_{h}"] = r[f"{m}_{h}"]
                if m != "direction_n":
                    rec[f"{m}_{h}_std"] = r[f"{m}_{h}_std"]
        rec.update({k: r[k] for k in ("fit_seconds", "fit_seconds_std", "folds", "origins",
                                      "first_origin", "last_origin")})
        rec["torch_threads"] = int(r.get("torch_threads", 0))
        records.append(rec)
    board = pd.DataFrame(records)
    board = board.sort_values([metric, "variant"], ascending=[not grid.config.greater_is_better,
                                                              True], kind="mergesort")
    board.insert(0, "rank", np.arange(1, len(board) + 1))
    return board.reset_index(drop=True)


def _cell(value: Any) -> Any:
    return value if isinstance(value, int | float | str | bool) or value is None \
        else json.dumps(value, separators=(",", ":"))


def format_leaderboard(grid: Grid, board: pd.DataFrame) -> str:
    """A compact table: rank, variant, grid values, the ranking metric ± fold spread,
    MAE, direction, 80% coverage, fit time."""
    h = grid.horizon
    cols = ["rank", "variant", *grid.config.grid]
    show = board[cols].copy()
    metric = grid.config.metric
    show[f"{metric} {h}"] = [f"{m:.4f} ± {s:.4f}" for m, s in
                             zip(board[f"{metric}_{h}"], board[f"{metric}_{h}_std"], strict=True)]
    for m in ("mase", "mae", "direction", "coverage_80", "crps"):
        if m != metric:
            show[m] = board[f"{m}_{h}"].map(lambda x: f"{x:.4f}")
    show["fit s/fold"] = board["fit_seconds"].map(lambda x: f"{x:.1f}")
    return show.to_string(index=False)


def write_outputs(grid: Grid, board: pd.DataFrame, best: Variant, out: Path,
                  baselines: pd.DataFrame) -> Path:
    board.to_csv(out / "leaderboard.csv", index=False)
    baselines.to_csv(out / "baselines.csv", index=False)
    h, metric = grid.horizon, grid.config.metric
    head = (f"# Leaderboard: {grid.name}\n\nBase spec `{grid.base_source}`, {len(board)} variants, "
            f"ranked by mean {metric} on {h} over {int(board['folds'].iloc[0])} walk-forward "
            f"folds ({'higher' if grid.config.greater_is_better else 'lower'} is better); "
            f"{int(board['origins'].iloc[0])} labelled origins {board['first_origin'].iloc[0]} .. "
            f"{board['last_origin'].iloc[0]}. `_std` is the spread over folds; fit_seconds per "
            "fold.\n\n")
    refs = ("\n## Baselines on the same folds\n\n"
            + baselines.to_markdown(index=False, floatfmt=".4f") + "\n")
    (out / "leaderboard.md").write_text(head + board.to_markdown(index=False, floatfmt=".4f")
                                        + "\n" + refs)
    spec = best.spec
    path = out / "best_spec.yaml"
    row = board.iloc[0]
    path.write_text(
        f"# Best of grid {grid.name} ({grid.source}) by mean {metric} on {h}: "
        f"{row[f'{metric}_{h}']:.4f} ± {row[f'{metric}_{h}_std']:.4f}\n"
        f"# variant {best.hash}: {best.label()}\n" + spec.to_yaml())
    return path
