"""Reused state proves it belongs (issue 13, class 5): checkpoints and run files
carry digests of the spec and data they came from and a checksum of their own;
resuming on changed data, an edited fold file, a damaged epoch file, a model from
another run, a cut ``invocation.json`` or ``manifest.json`` are refused in one
line naming the file."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cbi_toolkit.checkpoint import (
    CHECKPOINTS,
    RUN_KEY,
    EpochCheckpoint,
    bind_run,
    data_digest,
    load_epoch_state,
)
from cbi_toolkit.errors import ArtifactError
from tests.reliability_support import ZL, cli_args, make_small_data, only_run, run_cli, write_spec


@pytest.fixture(scope="module")
def finished(data_dir, tmp_path_factory):
    """One real small run, finished, and a second one with another window."""
    root = tmp_path_factory.mktemp("reuse")
    data = make_small_data(data_dir, root / "data")
    spec = write_spec(root / "small.yaml")
    runs = {}
    for name, extra in (("a", []), ("b", ["--set", "window=25"])):
        out = root / name
        out.mkdir()
        assert run_cli([*cli_args(spec, data, out), "-q", *extra]) == 0
        runs[name] = only_run(out)
    return data, runs


def copy_run(run_dir, tmp_path):
    dest = tmp_path / run_dir.name
    shutil.copytree(run_dir, dest)
    return dest


def as_interrupted(run_dir):
    (run_dir / "status.json").write_text(json.dumps({"state": "interrupted"}))


def refused(capsys, code, *words):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, (word, err)


def test_resume_on_changed_data_is_refused(finished, tmp_path, capsys):
    data, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    as_interrupted(run_dir)
    changed = tmp_path / "data"
    shutil.copytree(data, changed)
    rows = pd.read_csv(changed / ZL, dtype=str)
    rows.iloc[:-10].to_csv(changed / ZL, index=False)  # ten fewer real sessions
    before = sorted(p.name for p in (run_dir / CHECKPOINTS).iterdir())
    code = run_cli(["--resume", str(run_dir), "--data-dir", str(changed), "-q"])
    refused(capsys, code, str(run_dir / CHECKPOINTS / RUN_KEY), "another data")
    assert sorted(p.name for p in (run_dir / CHECKPOINTS).iterdir()) == before
    assert json.loads((run_dir / "status.json").read_text())["state"] == "interrupted"


def test_resume_with_the_same_data_is_accepted(finished, tmp_path, capsys):
    """The refusal is not a false alarm: the unchanged data resumes (and the
    finished folds load from their checkpoints)."""
    data, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    as_interrupted(run_dir)
    (run_dir / "forecasts.csv").unlink()
    args = ["--resume", str(run_dir), "--data-dir", str(data), "--sink",
            f"duckdb://{tmp_path / 'f.duckdb'}", "-q"]
    assert run_cli(args) == 0, capsys.readouterr().err
    assert (run_dir / "forecasts.csv").is_file()


def test_edited_fold_checkpoint_is_refused(finished, tmp_path, capsys):
    data, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    as_interrupted(run_dir)
    fold = run_dir / CHECKPOINTS / "fold-0.json"
    doc = json.loads(fold.read_text())
    doc["preds"][0]["mu"]["values"][0] += 0.5  # a better-looking fold, still valid JSON
    fold.write_text(json.dumps(doc))
    code = run_cli(["--resume", str(run_dir), "--data-dir", str(data), "-q"])
    refused(capsys, code, str(fold), "checksum")


def test_a_fold_from_another_run_is_refused(finished, tmp_path, capsys):
    data, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    as_interrupted(run_dir)
    other = runs["b"] / CHECKPOINTS / "fold-0.json"
    shutil.copy(other, run_dir / CHECKPOINTS / "fold-0.json")
    code = run_cli(["--resume", str(run_dir), "--data-dir", str(data), "-q"])
    refused(capsys, code, "fold-0.json", "belongs to another run")


def test_predict_with_a_model_from_another_run_is_refused(finished, tmp_path, capsys):
    data, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    shutil.rmtree(run_dir / "model")
    shutil.copytree(runs["b"] / "model", run_dir / "model")  # window 25, not 20
    code = run_cli(["--predict", str(run_dir), "--data-dir", str(data), "--sink",
                    f"duckdb://{tmp_path / 'f.duckdb'}"])
    refused(capsys, code, str(run_dir / "model"), "another run")
    assert not (tmp_path / "f.duckdb").exists()
    assert not (run_dir / "predictions").exists()


def test_cut_invocation_json_does_not_redirect_sink_only(finished, tmp_path, capsys,
                                                         monkeypatch):
    _, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    inv = run_dir / "invocation.json"
    inv.write_text(inv.read_text()[:-7])
    monkeypatch.chdir(tmp_path)  # the spec's default sink would be ./runs/forecasts.duckdb
    code = run_cli(["--sink-only", str(run_dir)])
    refused(capsys, code, str(inv), "--sink")
    assert not (tmp_path / "runs").exists()


def test_edited_spec_yaml_is_refused(finished, tmp_path, capsys):
    data, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    spec = run_dir / "spec.yaml"
    spec.write_text(spec.read_text().replace("window: 20", "window: 30"))
    code = run_cli(["--predict", str(run_dir), "--data-dir", str(data)])
    refused(capsys, code, str(spec), "changed since the run started")


@pytest.mark.parametrize("name", ["forecasts.csv", "metrics.json"])
def test_sink_only_refuses_an_edited_run_file(name, finished, tmp_path, capsys):
    """An edited forecasts.csv would go to the warehouse as the run's forecast; an
    edited metrics.json could turn a failed gate into a pass."""
    _, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    file = run_dir / name
    if name == "forecasts.csv":
        rows = pd.read_csv(file)
        rows["predicted_price"] *= 1.01
        rows.to_csv(file, index=False)
    else:
        file.write_text(file.read_text().replace('"passed": true', '"passed": true '))
    db = tmp_path / "f.duckdb"
    code = run_cli(["--sink-only", str(run_dir), "--sink", f"duckdb://{db}"])
    refused(capsys, code, str(file), "changed since the run wrote it")
    assert not db.exists()


def test_sink_only_of_an_unchanged_run_writes(finished, tmp_path, capsys):
    _, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    assert run_cli(["--sink-only", str(run_dir), "--sink", f"duckdb://{tmp_path / 'f.duckdb'}"]) \
        == 0, capsys.readouterr().err


def test_cut_manifest_json_is_refused(finished, tmp_path, capsys):
    data, runs = finished
    run_dir = copy_run(runs["a"], tmp_path)
    manifest = run_dir / "model" / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    code = run_cli(["--predict", str(run_dir), "--data-dir", str(data)])
    refused(capsys, code, str(manifest), "unreadable")


# -- epoch checkpoints (library level, a real one-epoch fit) ---------------------------------

@pytest.fixture(scope="module")
def epoch_file(finished, tmp_path_factory):
    from cbi_toolkit.backtest import labelled_samples, with_epoch_checkpoint
    from cbi_toolkit.pipeline import build_pipeline
    from cbi_toolkit.run.prepare import prepare
    from cbi_toolkit.spec import load_spec

    data, runs = finished
    spec = load_spec(runs["a"] / "spec.yaml", overrides={"training.max_epochs": 1})
    _, samples = prepare(spec, str(data))
    labelled = labelled_samples(samples)
    folder = tmp_path_factory.mktemp("epoch") / CHECKPOINTS
    bind_run(folder, "spec-digest", data_digest(labelled))
    pipe = with_epoch_checkpoint(build_pipeline(spec, verbose=0), folder / "fit-0-model")
    pipe.fit(labelled.X, labelled.y)
    return folder / "fit-0-model" / "epoch.pt"


def test_a_damaged_epoch_checkpoint_is_refused_not_trained_on(epoch_file, tmp_path):
    assert load_epoch_state(epoch_file)["epoch"] == 1
    damaged = tmp_path / "epoch.pt"
    raw = bytearray(epoch_file.read_bytes())
    raw[-200] ^= 0xFF  # one flipped bit pattern inside the weights
    damaged.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="damaged"):
        load_epoch_state(damaged)


def test_an_epoch_checkpoint_of_another_run_is_refused(epoch_file, tmp_path):
    folder = tmp_path / CHECKPOINTS / "fit-0-model"
    folder.mkdir(parents=True)
    shutil.copy(epoch_file, folder / "epoch.pt")
    bind_run(tmp_path / CHECKPOINTS, "other-spec", "other-data")
    callback = EpochCheckpoint(folder).initialize()
    with pytest.raises(ArtifactError, match="belongs to another run"):
        callback.on_train_begin(net=None)


def test_run_key_refuses_a_changed_spec(tmp_path):
    bind_run(tmp_path, "spec-1", "data-1")
    assert bind_run(tmp_path, "spec-1", "data-1") == {"spec": "spec-1", "data": "data-1"}
    with pytest.raises(ArtifactError, match="another spec"):
        bind_run(tmp_path, "spec-2", "data-1")
    key = tmp_path / RUN_KEY
    key.write_text(key.read_text().replace("data-1", "data-2"))
    with pytest.raises(ArtifactError, match="checksum"):
        bind_run(tmp_path, "spec-1", "data-2")
