"""Security: saved models and checkpoints load without unpickling and refuse
tampering; forecast values reach SQL only as data; YAML from --set is loaded
safely; credentials from the environment never reach a run's artifacts, the
cache, the sink or the logs. (Spec output paths that escape the working
directory are refused in tests/test_reliability_badinput.py; BigQuery identifier
injection and endpoint faults in tests/test_bigquery_sink.py.)"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from werkzeug import Request, Response

from cbi_toolkit.artifacts import load_pipeline, save_pipeline
from cbi_toolkit.backtest import labelled_samples
from cbi_toolkit.checkpoint import load_epoch_state, load_fold
from cbi_toolkit.errors import ArtifactError
from cbi_toolkit.pipeline import build_pipeline, predict_dist
from cbi_toolkit.run.prepare import prepare
from cbi_toolkit.sinks.duckdb import DuckDBSink
from cbi_toolkit.spec import load_spec
from tests.reliability_support import (
    DGS10,
    ZL,
    cli_args,
    make_small_data,
    only_run,
    run_cli,
    write_spec,
)


class Evil:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def saved(data_dir, tmp_path_factory):
    """A real fitted pipeline (one epoch on the newest real ZL rows), saved."""
    root = tmp_path_factory.mktemp("saved")
    data = make_small_data(data_dir, root / "data")
    spec = load_spec(write_spec(root / "small.yaml"), overrides={"training.max_epochs": 1})
    _, samples = prepare(spec, str(data))
    train = labelled_samples(samples)
    pipe = build_pipeline(spec, verbose=0).fit(train.X, train.y)
    model = save_pipeline(pipe, root / "model", meta={"feature_names": samples.feature_names})
    mu, _ = predict_dist(pipe, samples.X[[len(samples) - 1]])
    return model, samples, mu


def _copy(saved, tmp_path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(saved[0], copy)
    return copy


def _rehash(model: Path, name: str) -> None:
    manifest = json.loads((model / "manifest.json").read_text())
    manifest[name] = hashlib.sha256((model / name).read_bytes()).hexdigest()
    (model / "manifest.json").write_text(json.dumps(manifest))


def test_saved_model_round_trip(saved):
    model, samples, mu = saved
    pipe, _ = load_pipeline(model)
    again, _ = predict_dist(pipe, samples.X[[len(samples) - 1]])
    np.testing.assert_allclose(again, mu, rtol=1e-6)


def test_flipped_weight_byte_is_refused(saved, tmp_path):
    model = _copy(saved, tmp_path)
    weights = model / "net/weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-5] ^= 0x01
    weights.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="checksum differs"):
        load_pipeline(model)
    # the manifest updated too: the sha256 in regressor.json still catches it
    _rehash(model, "net/weights.safetensors")
    with pytest.raises(ArtifactError, match="sha256 differs"):
        load_pipeline(model)


def test_pickle_in_place_of_weights_is_never_run(saved, tmp_path):
    model = _copy(saved, tmp_path)
    marker = tmp_path / "pwned"
    weights = model / "net/weights.safetensors"
    weights.write_bytes(pickle.dumps(Evil(marker)))
    config = json.loads((model / "net/regressor.json").read_text())
    config["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    (model / "net/regressor.json").write_text(json.dumps(config))
    _rehash(model, "net/weights.safetensors")
    _rehash(model, "net/regressor.json")
    with pytest.raises(ArtifactError, match="cannot be loaded"):
        load_pipeline(model)
    assert not marker.exists()


@pytest.mark.parametrize("name, change", [
    ("meta.json", lambda d: {**d, "feature_names": ["x"]}),
    ("net/regressor.json", lambda d: {**d, "params": {**d["params"], "module__hidden_dim": 16}}),
    ("scaler.json", lambda d: {**d, "mean": "nonsense"}),
])
def test_tampered_json_is_refused(saved, tmp_path, name, change):
    model = _copy(saved, tmp_path)
    path = model / name
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(ArtifactError, match="checksum differs"):
        load_pipeline(model)
    _rehash(model, name)  # a consistent forgery of the manifest: still no silent load
    if name != "meta.json":
        with pytest.raises(ArtifactError):
            load_pipeline(model)


def test_pickled_epoch_checkpoint_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "epoch.pt"
    torch.save({"format": 1, "module": Evil(marker)}, path)
    with pytest.raises(ArtifactError, match="only unpickling code could build"):
        load_epoch_state(path)
    assert not marker.exists()


def test_resume_refuses_a_pickled_checkpoint(data_dir, tmp_path, capsys):
    data = make_small_data(data_dir, tmp_path / "data")
    run_dir = tmp_path / "runs" / "small-planted"
    ckpt = run_dir / "checkpoints" / "fit-0-net"  # the network's checkpoint of fold 0
    ckpt.mkdir(parents=True)
    write_spec(run_dir / "spec.yaml")
    (run_dir / "invocation.json").write_text(json.dumps({"sink": f"duckdb://{tmp_path / 'f.db'}"}))
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "module": Evil(marker)}, ckpt / "epoch.pt")
    assert run_cli(["--resume", str(run_dir), "--data-dir", str(data), "-q"]) == 2
    err = capsys.readouterr().err
    assert "refused to load the epoch checkpoint" in err and "Traceback" not in err
    assert not marker.exists() and not (tmp_path / "f.db").exists()


def test_tampered_fold_checkpoint_is_refused(tmp_path):
    (tmp_path / "fold-0.json").write_text(json.dumps({"format": 1, "fit_seconds": {}, "preds": [
        {"model": "m", "fold": 0, "horizon": "1w", "y": {"dtype": "|O", "values": [1]},
         "mu": [], "sigma": [], "price": [], "dates": []}]}))
    with pytest.raises(ArtifactError, match="unreadable fold checkpoint"):
        load_fold(tmp_path, 0)


def test_sql_in_forecast_values_is_stored_as_data(data_dir, tmp_path):
    """Values reach DuckDB as a registered frame, never formatted into SQL."""
    zl = pd.read_csv(data_dir / ZL).tail(2)
    evil = "v'); DROP TABLE predictions; --"
    batch = pd.DataFrame({
        "origin_date": zl["date"], "horizon": "1w", "target_date": zl["date"],
        "predicted_price": zl["close"], "lower_80": zl["low"], "upper_80": zl["high"],
        "lower_95": zl["low"], "upper_95": zl["high"], "sigma": 0.02, "model_version": evil,
        "run_id": 'r"; DELETE FROM predictions; --', "created_at": pd.Timestamp.now(tz="UTC"),
        "series": "zl'); DROP TABLE actuals; --", "kind": "forecast"})
    sink = DuckDBSink(tmp_path / "s.duckdb")
    assert sink.write(batch) == 2
    assert sink.write(batch) == 2
    rows = sink.read_all()
    assert len(rows) == 2 and set(rows["model_version"]) == {evil}


def test_set_override_yaml_is_loaded_safely(specs_dir, tmp_path, capsys):
    marker = tmp_path / "pwned"
    code = run_cli([str(specs_dir / "zl_1m_quick.yaml"), "--check", "--set",
                    f"name=!!python/object/apply:os.system ['touch {marker}']"])
    assert code == 2 and not marker.exists()
    assert "Traceback" not in capsys.readouterr().err


# -- credentials ---------------------------------------------------------------------------

FRED_SECRET = "cbi0planted0fred0key0c4a7e19b2"
GCP_SECRET = "cbi-planted-gcp-private-key-2d9c7b"


def test_planted_credentials_reach_no_artifact_or_log(live, data_dir, tmp_path, monkeypatch,
                                                      caplog, capsys):
    """A full run whose FRED driver is fetched through the FRED API (a local server
    serving the real DGS10 rows as the API's JSON) with FRED_API_KEY set, and a
    service-account file in GOOGLE_APPLICATION_CREDENTIALS: no file of the run
    folder, the cache or the sink, and no line of output or log, holds either."""
    creds = tmp_path / "service-account.json"
    creds.write_text(json.dumps({"type": "service_account", "private_key": GCP_SECRET}))
    monkeypatch.setenv("FRED_API_KEY", FRED_SECRET)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(creds))
    rows = pd.read_csv(data_dir / DGS10, dtype=str, keep_default_na=False)
    keys = []

    def api(request: Request) -> Response:
        keys.append(request.args["api_key"])
        obs = [{"date": d, "value": v or "."} for d, v in zip(rows["date"], rows["DGS10"],
                                                                strict=True)]
        return Response(json.dumps({"count": len(obs), "observations": obs}),
                        content_type="application/json")

    live.server.expect_request("/fred-api/fred/series/observations").respond_with_handler(api)
    data = make_small_data(data_dir, tmp_path / "data")
    (data / DGS10).unlink()
    spec = write_spec(tmp_path / "spec.yaml", data=[
        {"kind": "file", "path": ZL, "columns": {"close": "zl"}, "role": "price"},
        {"kind": "fred", "columns": {"DGS10": "dgs10"}, "role": "rate", "ffill_limit": 5,
         "start": "2020-01-01"}],
        training={"max_epochs": 1, "batch_size": 128, "device": "cpu"})
    caplog.set_level(logging.DEBUG)
    assert run_cli([*cli_args(spec, data, tmp_path), "-v"]) == 0
    assert keys and set(keys) == {FRED_SECRET}         # the key was used ...
    out = capsys.readouterr()
    places = [only_run(tmp_path), live.cache, tmp_path / "f.duckdb"]
    files = [p for place in places for p in ([place] if place.is_file() else place.rglob("*"))
             if p.is_file()]
    assert len(files) >= 15
    ours = "\n".join(r.getMessage() for r in caplog.records  # werkzeug: the stand-in server
                     if not r.name.startswith("werkzeug"))
    assert "api_key=***" in ours                        # urllib3 logged the masked URL
    texts = {"stdout": out.out, "stderr": out.err, "log": ours}
    leaks = [f"{f}" for f in files for s in (FRED_SECRET, GCP_SECRET) if s.encode() in
             f.read_bytes()] + [k for k, t in texts.items() for s in (FRED_SECRET, GCP_SECRET)
                                if s in t]
    assert not leaks, leaks                             # ... and written nowhere
    print(f"credential scan: {len(files)} files, stdout, stderr and log, no planted secret")


@pytest.mark.parametrize("output", ["../elsewhere", "/tmp/cbi-grid-out", "~/grid"])
def test_grid_output_from_a_file_cannot_leave_the_working_dir(specs_dir, tmp_path, capsys,
                                                              output):
    """A grid file's `output:` is a spec-given output path too (cbi-grid --output may
    point anywhere)."""
    import yaml

    from cbi_toolkit.search import main as grid_main

    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"base": str(specs_dir / "zl_1m_quick.yaml"), "name": "g",
                                    "grid": {"training.lr": [0.001, 0.01]}, "output": output}))
    assert grid_main([str(grid)]) == 2
    err = capsys.readouterr().err
    assert "outside the working directory" in err and "--output" in err
    assert "Traceback" not in err and not Path(output).expanduser().exists()
