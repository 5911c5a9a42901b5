"""Errors never print file contents or raw control codes, and a symlink cannot
carry a spec's output paths out of the working directory (issue 13, class 6)."""

from __future__ import annotations

import os

import pytest
import yaml

from cbi_toolkit.cli import main
from cbi_toolkit.search.cli import main as grid_main
from tests.reliability_support import SMALL_SPEC, make_small_data, write_spec

SECRET = "cbi-planted-secret-9f1c2e7a"


def error_line(capsys, code) -> str:
    out = capsys.readouterr()
    assert code == 2, out
    assert out.err.count("\n") == 1 and out.err.startswith("error: "), out.err
    assert "Traceback" not in out.err
    return out.err


@pytest.mark.parametrize("parent", ["shadow", "secret.yaml", "secret.yml"])
def test_extends_never_prints_the_parent_file(parent, tmp_path, capsys):
    (tmp_path / parent).write_text(f"root:$6${SECRET}:19000:0:99999:7:::\n{SECRET}: [\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"extends: {tmp_path / parent}\nname: x\n")
    err = error_line(capsys, main(["--check", str(spec)]))
    assert SECRET not in err and "extends" in err


def test_extends_etc_shadow_is_refused_without_reading_it(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("extends: /etc/shadow\nname: x\n")
    err = error_line(capsys, main(["--check", str(spec)]))
    assert "not a .yaml or .yml file" in err
    assert "root:" not in err and "$6$" not in err  # no line of the file


@pytest.mark.parametrize("name", [".env", "secrets.env", "id_rsa", "creds.json"])
def test_a_data_path_at_a_non_table_is_refused_at_check(name, tmp_path, capsys):
    doc = yaml.safe_load(yaml.safe_dump(SMALL_SPEC))
    doc["data"][0]["path"] = str(tmp_path / name)
    doc["data"][1]["file"]["path"] = str(tmp_path / name)
    (tmp_path / name).write_text(f"FRED_API_KEY={SECRET}\n")
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(doc))
    err = error_line(capsys, main(["--check", str(spec)]))
    assert "not a data table" in err and SECRET not in err


def test_a_csv_that_is_not_a_table_never_echoes_its_first_line(tmp_path, data_dir, capsys):
    data = make_small_data(data_dir, tmp_path / "data")
    (data / "drivers" / "fred_DGS10.csv").write_text(f"FRED_API_KEY={SECRET}\nx=1\n")
    spec = write_spec(tmp_path / "s.yaml")
    err = error_line(capsys, main([str(spec), "--data-dir", str(data), "--runs-dir",
                                   str(tmp_path / "runs"), "--stage", "data"]))
    assert SECRET not in err and "not a header of column names" in err


@pytest.mark.parametrize("text", ["\x1b[31m", "\x1b]0;pwned\x07", "\u202e", "\x9b2J", "\r"])
def test_control_codes_in_a_spec_reach_no_terminal(text, tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    doc = yaml.safe_load(yaml.safe_dump(SMALL_SPEC))
    doc[f"key{text}x"] = 1
    spec.write_text(yaml.safe_dump(doc, allow_unicode=False))  # escapes, as YAML allows
    err = error_line(capsys, main(["--check", str(spec)]))
    assert text not in err and "unknown key" in err
    assert all(ch.isprintable() for ch in err.rstrip("\n")), repr(err)


def test_control_codes_reach_no_terminal_from_cbi_grid(tmp_path, capsys):
    grid = tmp_path / "g.yaml"
    grid.write_text('base: s.yaml\ngrid: {"model.hidden_dim\\e[31m": [8]}\n')
    write_spec(tmp_path / "s.yaml")
    code = grid_main([str(grid), "--check"])
    err = capsys.readouterr().err
    assert code == 2 and "\x1b" not in err and err.count("\n") == 1, err


@pytest.mark.parametrize("key", ["runs_dir", "sink"])
def test_a_symlink_cannot_carry_output_paths_out(key, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    elsewhere = tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, work / "out")
    monkeypatch.chdir(work)
    value = "out/runs" if key == "runs_dir" else {"kind": "duckdb", "path": "out/f.duckdb"}
    spec = write_spec(work / "s.yaml", **{key: value})
    err = error_line(capsys, main(["--check", str(spec)]))
    assert "symbolic link" in err and (key if key == "runs_dir" else "sink.path") in err
    # a symlink inside the working directory stays allowed
    os.symlink(work / "real", work / "inside")
    (work / "real").mkdir()
    value = "inside/runs" if key == "runs_dir" else {"kind": "duckdb", "path": "inside/f.duckdb"}
    assert main(["--check", str(write_spec(work / "t.yaml", **{key: value}))]) == 0
