"""The spec: shipped specs load, every error class gives a one-line message
naming the file, key path and line."""

from __future__ import annotations

import json

import pytest

from cbi_toolkit.cli import main
from cbi_toolkit.errors import SpecError
from cbi_toolkit.spec import load_spec, spec_json_schema

SHIPPED = ["zl_1w", "zl_1m", "zl_3m", "zl_6m", "zl_12m", "zl_all", "zl_1m_quick", "zl_all_quick"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_specs_load(specs_dir, name):
    spec = load_spec(specs_dir / f"{name}.yaml")
    assert spec.name == name
    assert spec.target == "zl"
    assert spec.gap >= spec.max_horizon


def test_design_sizes_and_extends(specs_dir):
    full = load_spec(specs_dir / "zl_1m.yaml")
    quick = load_spec(specs_dir / "zl_1m_quick.yaml")
    assert (full.window, full.model.hidden_dim, full.model.num_layers, full.model.num_heads) == \
        (252, 256, 3, 8)
    assert (full.training.batch_size, full.training.lr, full.training.max_epochs) == (32, 1e-3, 40)
    assert (full.training.stride, quick.training.stride) == (5, 1)  # the quick net sees every origin
    assert quick.window == 63 and quick.model.hidden_dim == 64
    # inherited, not restated
    assert quick.data == full.data and quick.horizons == ["1m"]
    assert load_spec(specs_dir / "zl_all.yaml").horizon_days == [5, 21, 63, 126, 252]


def write(tmp_path, text, name="spec.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def base(specs_dir):
    return f"extends: {specs_dir / 'zl_1m_quick.yaml'}\n"


@pytest.mark.parametrize("body, key, words", [
    ("model:\n  hiden_dim: 3\n", "model.hiden_dim (line 3)", "did you mean 'hidden_dim'"),
    ("model:\n  hidden_dim: lots\n", "model.hidden_dim (line 3)", "valid integer"),
    ("model:\n  hidden_dim: -4\n", "model.hidden_dim (line 3)", "greater than 0"),
    ("window: 0\n", "window (line 2)", "greater than 1"),
    ("features: [returns, macdd]\n", "features (line 2)", "did you mean 'macd'"),
    ("features: []\n", "features (line 2)", "at least 1"),
    ("horizons: [2m]\n", "horizons (line 2)", "allowed: 1w, 1m, 3m, 6m, 12m"),
    ("horizons: [1m, 1m]\n", "horizons (line 2)", "duplicate"),
    ("validation:\n  gap: 3\n", "(top level)", "at least the longest horizon"),
    ("target: zz\n", "(top level)", "not a series named in data"),
    ("features:\n  - rsi: {window: -2}\n", "features (line 2)", "positive integers"),
    ("features:\n  - rsi: {span: 3}\n", "features (line 2)", "unknown parameter 'span'"),
    ("training:\n  device: tpu\n", "training.device (line 3)", "'auto', 'cpu', 'cuda' or 'mps'"),
    ("forecast:\n  calibration: {mode: rolling}\n", "forecast.calibration.mode (line 3)",
     "'fixed' or 'online'"),
    ("forecast:\n  calibration: {halflife: 0}\n", "forecast.calibration.halflife (line 3)",
     "from 1 to 25200"),
    ("forecast:\n  calibration: {mode: fixed, halflife: 252}\n", "forecast.calibration (line 3)",
     "with mode: fixed remove it"),
])
def test_spec_errors_name_file_key_and_line(tmp_path, specs_dir, body, key, words):
    path = write(tmp_path, base(specs_dir) + body)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key}")
    assert words in msg


def test_malformed_yaml(tmp_path):
    path = write(tmp_path, "model: {hidden_dim: 3\nwindow: 4\n")
    with pytest.raises(SpecError, match=r"spec.yaml \(line \d+\): malformed YAML"):
        load_spec(path)


def test_not_a_mapping(tmp_path):
    with pytest.raises(SpecError, match="a spec is a YAML mapping"):
        load_spec(write(tmp_path, "- a\n- b\n"))


def test_extends_cycle_and_missing_parent(tmp_path):
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(SpecError, match=r"extends: cycle a.yaml -> b.yaml -> a.yaml"):
        load_spec(tmp_path / "a.yaml")
    with pytest.raises(SpecError, match=r"extends: spec file .*nope.yaml not found"):
        load_spec(write(tmp_path, "extends: nope.yaml\n", "c.yaml"))


def test_yaml_is_loaded_safely(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path, f"name: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(SpecError, match="malformed YAML"):
        load_spec(path)
    assert not marker.exists()


def test_overrides_apply_before_validation(specs_dir):
    spec = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"model.hidden_dim": 32})
    assert spec.model.hidden_dim == 32
    with pytest.raises(SpecError, match="model.hidden_dim"):
        load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"model.hidden_dim": 0})


def test_json_schema_lists_every_section():
    schema = spec_json_schema()
    for key in ("data", "features", "horizons", "window", "model", "training", "validation",
                "gate", "sink", "extends"):
        assert key in schema["properties"]
    json.dumps(schema)


def test_cli_check_ok_and_bad(tmp_path, specs_dir, capsys):
    assert main(["--check", str(specs_dir / "zl_1m.yaml")]) == 0
    assert "ok" in capsys.readouterr().out
    bad = write(tmp_path, base(specs_dir) + "windw: 3\n")
    assert main(["--check", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "windw" in err and "did you mean 'window'" in err


@pytest.mark.parametrize("body, expected", [
    ("data:\n  - kind: yahoo\n    tickr: ZL=F\n    columns: {close: zl}\n",
     "data.0.tickr (line 4): unknown key 'tickr' (did you mean 'ticker'?)"),
    ("data:\n  - kind: yahooo\n    columns: {close: zl}\n",
     "data.0 (line 3): unknown kind 'yahooo'; allowed: 'file'"),
    ("features:\n  - rsi: 3\n", "features (line 2): item 0 ({'rsi': 3}): a feature is a name"),
    ("sink: {kind: duckdb, pth: x}\n", "sink.pth (line 2): unknown key 'pth' (did you mean 'path'?)"),
])
def test_errors_inside_unions_name_the_real_key(tmp_path, specs_dir, body, expected):
    path = write(tmp_path, base(specs_dir) + body)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert str(err.value).startswith(f"{path}: {expected}")


def test_every_spec_key_is_documented(specs_dir):
    from pydantic import BaseModel

    from cbi_toolkit.sinks.config import DuckDBSinkConfig
    from cbi_toolkit.sources.files import FileSource
    from cbi_toolkit.spec import Spec

    doc = (specs_dir.parent / "docs" / "spec.md").read_text()
    missing = []

    def visit(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            if f"`{name}`" not in doc and f".{name}`" not in doc and f"`{name}." not in doc:
                missing.append(f"{model.__name__}.{name}")
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                visit(ann)

    for model in (Spec, FileSource, DuckDBSinkConfig):
        visit(model)
    assert not missing, f"undocumented spec keys in docs/spec.md: {missing}"


def test_fingerprint_ignores_keys_left_at_their_defaults(specs_dir):
    """A release that adds a spec key must not orphan the runs saved before it: the same
    spec with a key spelt out at its default has the same fingerprint, another value not."""
    from cbi_toolkit.spec import Spec, spec_fingerprint

    class NextReleaseSpec(Spec):  # the same schema plus a key with a default
        new_key: int = 7

    base = load_spec(specs_dir / "zl_1m_quick.yaml")
    newer = NextReleaseSpec.model_validate(base.model_dump())
    assert newer.new_key == 7 and spec_fingerprint(newer) == spec_fingerprint(base)
    spelt_out = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"training.stride": 1})
    assert spec_fingerprint(spelt_out) == spec_fingerprint(base)
    changed = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"training.stride": 2})
    assert spec_fingerprint(changed) != spec_fingerprint(base)
    # where a run writes is not part of it either
    moved = load_spec(specs_dir / "zl_1m_quick.yaml", overrides={"runs_dir": "elsewhere"})
    assert spec_fingerprint(moved) == spec_fingerprint(base)
