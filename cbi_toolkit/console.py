"""What the command lines share: printing a run's progress and tables, the exit codes of
its outcomes, and the one way an error reaches the terminal (one line, no traceback)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from cbi_toolkit.errors import CbiError, safe_text

if TYPE_CHECKING:
    import pandas as pd

    from cbi_toolkit.run.options import RunResult

OK = 0
GATE_FAILED = 3
INTERRUPTED = 130


def exit_code(result: RunResult) -> int:
    """0, or 3 when the run (or the saved run) failed its deploy gate."""
    return GATE_FAILED if result.gate_failed else OK


def one_line(exc: BaseException) -> str:
    """An error's message folded onto one line, control codes shown as escapes."""
    return safe_text(" ".join(str(exc).splitlines()))


def guarded(command: Callable[[], int], prefix: str = "error: ",
            interrupted: str = "interrupted") -> int:
    """Run ``command``; a `CbiError` becomes ``prefix`` + its one-line message on stderr and
    its exit code, Ctrl-C the ``interrupted`` line and 130. Anything else is a bug: it
    raises with its traceback."""
    from cbi_toolkit.run.interrupts import RunInterrupted

    try:
        return command()
    except CbiError as exc:
        print(f"{prefix}{one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return INTERRUPTED
    except RunInterrupted as exc:  # Ctrl-C during a run: it names --resume
        print(f"error: {exc}", file=sys.stderr)
        return INTERRUPTED


class PrintedEvents:
    """`cbi_toolkit.run.options.RunEvents` for a terminal: notes and tables on stdout."""

    def note(self, text: str) -> None:
        print(text)

    def assessed(self, summary: pd.DataFrame, horizons: list[str], notes: dict[str, str]) -> None:
        from cbi_toolkit.evaluation import format_table

        for horizon in horizons:
            print(format_table(summary, horizon))
            print(notes[horizon])

    def forecast(self, forecasts: pd.DataFrame, bands: tuple[int, ...]) -> None:
        columns = ["horizon", "origin_date", "target_date", "predicted_price"]
        if "series" in forecasts and forecasts["series"].nunique() > 1:  # a pooled run's
            columns.insert(0, "series")
        for pct in bands:
            columns += [f"lower_{pct}", f"upper_{pct}"]
        print(forecasts[columns].to_string(index=False))

    def evaluated(self, summary: pd.DataFrame, horizons: list[str]) -> None:
        from cbi_toolkit.evaluation import format_table

        if "series" in summary:  # a pooled run: each commodity's table
            for series, rows in summary.groupby("series", sort=False):
                print(f"== {series}")
                self.evaluated(rows.drop(columns="series"), horizons)
            return
        for horizon in horizons:
            print(format_table(summary, horizon))
