"""Bounded spec parsing (issue 13, class 3): size, nesting depth, alias expansion,
``extends:`` chain length and encodings are bounded and refused in one line; values
that would crash later fail at ``--check`` or before the run folder exists."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cbi_toolkit.cli import main
from cbi_toolkit.errors import SpecError
from cbi_toolkit.spec import MAX_DEPTH, MAX_EXTENDS, MAX_NODES, MAX_SPEC_BYTES, load_spec
from tests.reliability_support import cli_args, make_small_data, write_spec

MEMORY_LIMIT = 3 << 30  # the --check subprocess may use at most 3 GiB of address space


def alias_bomb(levels: int, fan: int) -> str:
    lines = ["name: bomb", "l0: &l0 [" + ", ".join(['"lol"'] * fan) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def check_in_subprocess(path) -> subprocess.CompletedProcess:
    """``cbi-run --check`` under a memory limit and a timeout: a hostile file must be
    refused, not expanded until the limit or the timeout ends it."""
    return subprocess.run([sys.executable, "-m", "cbi_toolkit.cli", "--check", str(path)],
                          capture_output=True, text=True, timeout=120, preexec_fn=_limit_memory)


HOSTILE = [
    ("alias-bomb", lambda: alias_bomb(9, 9).encode(), "expands to more than"),
    ("deep-nesting-20000", lambda: ("name: x\nv: " + "[" * 20000 + "]" * 20000 + "\n").encode(),
     "nested deeper than"),
    ("deep-mappings", lambda: ("name: x\n" + "".join("  " * i + f"k{i}:\n"
                                                    for i in range(200)) + "  " * 200 + "1\n"
                               ).encode(), "nested deeper than"),
    ("recursive-alias", lambda: b"name: x\nv: &a [1, *a]\n", "alias refers to"),
    ("latin-1", lambda: "name: x\ndescription: caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("utf-16", lambda: "name: x\n".encode("utf-16"), "UTF-16"),
    ("50-mb", lambda: b"name: x\nv: [" + b",".join([b"1"] * (MAX_SPEC_BYTES // 2 + 10)) + b"]\n",
     "larger than"),
    ("many-items", lambda: b"name: x\nv: [" + b",".join([b"1"] * (MAX_NODES * 3)) + b"]\n",
     "more than"),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_spec_refused_in_one_line_with_bounded_memory(case, tmp_path):
    _, body, words = case
    path = tmp_path / "s.yaml"
    path.write_bytes(body())
    done = check_in_subprocess(path)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: "), done.stderr
    assert words in done.stderr and str(path) in done.stderr


def test_extends_chain_is_bounded(tmp_path, capsys):
    n = 1000
    for i in range(n):
        (tmp_path / f"c{i}.yaml").write_text(f"extends: c{i + 1}.yaml\n")
    (tmp_path / f"c{n}.yaml").write_text("name: x\n")
    code = main(["--check", str(tmp_path / "c0.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"longer than {MAX_EXTENDS}" in err, err


# -- properties (hypothesis) ------------------------------------------------------------

PROPS = settings(max_examples=40, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPS
@given(depth=st.integers(1, MAX_DEPTH * 3))
def test_nesting_is_refused_exactly_beyond_the_bound(tmp_path, depth):
    path = tmp_path / "d.yaml"
    path.write_text("name: x\ndescription: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(SpecError) as err:  # a list is never a valid description
        load_spec(path)
    too_deep = depth + 1 > MAX_DEPTH  # the top-level mapping is one level
    assert ("nested deeper than" in str(err.value)) == too_deep, (depth, str(err.value))
    assert "\n" not in str(err.value)


@PROPS
@given(levels=st.integers(1, 12), fan=st.integers(2, 12))
def test_alias_expansion_is_refused_exactly_when_too_large(tmp_path, levels, fan):
    path = tmp_path / "b.yaml"
    path.write_text(alias_bomb(levels, fan))
    with pytest.raises(SpecError) as err:  # keys l0.. are unknown: an error either way
        load_spec(path)
    expanded = sum(fan ** i for i in range(1, levels + 2))  # the last level's values
    if expanded > MAX_NODES * 2:
        assert "expands to more than" in str(err.value)
    elif expanded < MAX_NODES // 2:
        assert "expands to more than" not in str(err.value)
        assert "unknown key" in str(err.value)


@PROPS
@given(n=st.integers(0, MAX_EXTENDS * 2))
def test_extends_chain_refused_exactly_beyond_the_bound(tmp_path, n):
    folder = tmp_path / f"chain{n}"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"c{i}.yaml").write_text(f"extends: c{i + 1}.yaml\n")
    (folder / f"c{n}.yaml").write_text("name: x\n")
    try:
        load_spec(folder / "c0.yaml")
    except SpecError as exc:
        refused = "chain longer than" in str(exc)
    else:
        refused = False
    assert refused == (n > MAX_EXTENDS)


@PROPS
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_give_a_spec_or_a_one_line_error(tmp_path, data):
    path = tmp_path / "x.yaml"
    path.write_bytes(data)
    try:
        load_spec(path)
    except SpecError as exc:
        text = str(exc)
        assert "\n" not in text and "\x1b" not in text
        assert all(ch.isprintable() for ch in text), repr(text)


# -- values that would crash later ------------------------------------------------------

CHECK_REFUSED = [
    ({"validation": {"n_splits": 5000}}, "validation.n_splits"),
    ({"validation": {"test_size": 100000}}, "validation.test_size"),
    ({"model": {"hidden_dim": 100000, "num_heads": 2}}, "model.hidden_dim"),
    ({"model": {"hidden_dim": 2048, "num_layers": 8, "num_heads": 2}}, "M weights"),
    ({"window": 100000}, "window"),
    ({"training": {"batch_size": 10 ** 7}}, "training.batch_size"),
]


@pytest.mark.parametrize("change,words", CHECK_REFUSED, ids=[w for _, w in CHECK_REFUSED])
def test_values_that_would_crash_later_fail_at_check(change, words, tmp_path, capsys):
    spec = write_spec(tmp_path / "s.yaml", **change)
    code = main(["--check", str(spec)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err


@pytest.fixture(scope="module")
def small_data(data_dir, tmp_path_factory):
    return make_small_data(data_dir, tmp_path_factory.mktemp("small") / "data")


@pytest.mark.parametrize("change,words", [
    ({"validation": {"n_splits": 2, "test_size": 400}}, "lower validation.n_splits"),
    ({"validation": {"n_splits": 100, "test_size": 10}}, "lower validation.n_splits"),
    ({"window": 600}, "labelled origins"),
], ids=["test-size", "splits-x-test-size", "window-longer-than-history"])
def test_folds_the_history_cannot_hold_fail_before_the_run_folder(change, words, tmp_path,
                                                                  small_data, capsys):
    spec = write_spec(tmp_path / "s.yaml", **change)
    code = main(cli_args(spec, small_data, tmp_path) + ["-q"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "f.duckdb").exists()
