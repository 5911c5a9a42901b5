"""Only real files are sinks (issue 13, class 2): an in-memory or remote DuckDB
"path" would make a run report success while its forecasts vanish, so it is refused
at ``--check``, through ``--sink`` and in the spec, before any run folder exists."""

from __future__ import annotations

import pytest

from cbi_toolkit.cli import main
from cbi_toolkit.errors import SinkError
from cbi_toolkit.sinks.resolve import sink_config
from tests.reliability_support import make_small_data, write_spec

NOT_FILES = [":memory:", ":memory:named", "md:mydb", "motherduck:mydb", "s3://bucket/f.duckdb",
             "https://example.org/f.duckdb", " :memory:"]


def one_line_error(capsys, code, *words):
    out = capsys.readouterr()
    assert code == 2, out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert "Traceback" not in out.err
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize("path", NOT_FILES)
def test_check_refuses_a_sink_that_is_not_a_file(path, tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml")
    one_line_error(capsys, main(["--check", str(spec), "--sink", f"duckdb://{path}"]),
                   "--sink", "not a file")
    one_line_error(capsys, main(["--check", str(spec), "--set",
                                 f"sink={{kind: duckdb, path: '{path}'}}"]),
                   "sink.path", "not a file")


def test_a_folder_is_not_a_sink_file(tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml")
    one_line_error(capsys, main(["--check", str(spec), "--sink", "duckdb://runs/"]), "folder")


def test_a_run_to_memory_is_refused_before_its_run_folder(tmp_path, data_dir, capsys):
    data = make_small_data(data_dir, tmp_path / "data")
    spec = write_spec(tmp_path / "s.yaml")
    code = main([str(spec), "--data-dir", str(data), "--runs-dir", str(tmp_path / "runs"),
                 "--sink", "duckdb://:memory:"])
    one_line_error(capsys, code, "not a file")
    assert not (tmp_path / "runs").exists()


def test_real_file_paths_are_accepted():
    for path in ("runs/forecasts.duckdb", "/tmp/x/f.duckdb", "f.duckdb", "C:/data/f.duckdb"):
        assert sink_config(None, f"duckdb://{path}").path == path
    with pytest.raises(SinkError, match="expected duckdb"):
        sink_config(None, "sqlite:///x.db")
