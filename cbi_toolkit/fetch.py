"""``cbi-fetch SPEC``: download the live sources a spec declares into the local cache.

Every live source (Yahoo, FRED, CFTC, GHCN weather) is fetched into the Parquet
cache (``--cache-dir``, else ``$CBI_CACHE_DIR``, else ``~/.cache/cbi_toolkit``),
one file per series with provenance beside it. An entry younger than the source's
``stale_after_hours`` is kept, an older one is refreshed incrementally (only new
dates are appended), a missing or corrupt one is fetched whole; ``--refresh``
refetches everything. File sources and the ``file:`` alternatives are not touched:
``cbi-fetch`` always fills the cache from the live source.

The library entry point is `cbi_toolkit.sources.live.ensure_cached`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cbi_toolkit.console import guarded
from cbi_toolkit.sources.base import SourceContext
from cbi_toolkit.sources.live import ensure_cached, live_sources


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cbi-fetch", description=__doc__.split("\n\n")[0])
    p.add_argument("spec", help="spec YAML file")
    p.add_argument("--cache-dir", help="cache directory (default $CBI_CACHE_DIR or "
                   "~/.cache/cbi_toolkit)")
    p.add_argument("--refresh", action="store_true", help="refetch every series from scratch")
    p.add_argument("-v", "--verbose", action="store_true", help="log retries and cache checks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    return guarded(lambda: _fetch(args), prefix="cbi-fetch: ")


def _fetch(args: argparse.Namespace) -> int:
    from cbi_toolkit.spec import load_spec

    spec = load_spec(args.spec)
    ctx = SourceContext(data_dir=None,
                        cache_dir=Path(args.cache_dir).expanduser() if args.cache_dir else None,
                        refresh=args.refresh)
    if not live_sources(spec):
        print(f"{args.spec}: no live sources (yahoo, fred, cftc, ghcnd) to fetch")
        return 0
    results = ensure_cached(spec, ctx, progress=print, use_files=False)
    from cbi_toolkit.sources.cache import cache_root

    print(f"{len(results)} series in {cache_root(ctx.cache_dir)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
