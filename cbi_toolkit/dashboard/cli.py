"""``cbi-dashboard [--sink URL] [--port N] [--address HOST]``: serve the Streamlit app."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cbi_toolkit.dashboard.warehouse import DEFAULT_SINK

APP = Path(__file__).with_name("app.py")

#: Serve the bundled frontend only: no usage statistics, no file watcher, no browser.
STREAMLIT_FLAGS = ["--server.headless", "true", "--browser.gatherUsageStats", "false",
                   "--server.fileWatcherType", "none", "--global.developmentMode", "false",
                   "--client.toolbarMode", "minimal"]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cbi-dashboard", description=__doc__)
    parser.add_argument("--sink", default=os.environ.get("CBI_DASHBOARD_SINK", DEFAULT_SINK),
                        help="duckdb:PATH, duckdb:///ABS/PATH or bigquery://PROJECT/DATASET "
                             f"(default {DEFAULT_SINK})")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        from streamlit.web import cli as stcli
    except ImportError:
        print('cbi-dashboard needs Streamlit: python -m pip install "cbi_toolkit[dashboard]"',
              file=sys.stderr)
        return 2

    os.environ["CBI_DASHBOARD_SINK"] = args.sink
    sys.argv = ["streamlit", "run", str(APP), *STREAMLIT_FLAGS,
                "--server.port", str(args.port), "--server.address", args.address]
    return stcli.main()


if __name__ == "__main__":
    raise SystemExit(main())
