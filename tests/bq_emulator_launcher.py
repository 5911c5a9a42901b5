"""Start the ``bqemulator`` BigQuery REST emulator offline (run with .venv-bqemu's python).

At start-up bqemulator installs DuckDB's ``spatial`` extension from the internet and
refuses to start without it. Offline that fails, so this wraps the loader: only
GEOGRAPHY is lost. Usage: ``python tests/bq_emulator_launcher.py start --rest-port N ...``.
"""

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine

_load_spatial = DuckDBEngine._load_spatial


def _load_spatial_if_possible(self) -> None:
    try:
        _load_spatial(self)
    except Exception:  # offline: no spatial extension, no GEOGRAPHY
        pass


DuckDBEngine._load_spatial = _load_spatial_if_possible

if __name__ == "__main__":
    main()
