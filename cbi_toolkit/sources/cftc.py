"""CFTC Commitments of Traders, futures only, for one contract market code.

``{kind: cftc, markets: {zl: "007601"}, report: disaggregated, columns: {zl_mm_net: cot_mm}}``
downloads the CFTC's yearly compressed archives (the current year's archive is
updated every Friday), keeps the rows of each market code (one cache file per
market) and derives, per market alias, the columns ``{alias}_{name}`` for:

- ``legacy`` (``deacot{year}.zip`` -> ``annual.txt``): ``open_interest``,
  ``noncomm_long/short/net``, ``comm_long/short/net`` and ``noncomm_net_pct_oi``,
  ``comm_net_pct_oi`` (the CFTC's published "% of OI" long minus short).
- ``disaggregated`` (``fut_disagg_txt_{year}.zip`` -> ``f_year.txt``; 2006-2016 in
  ``fut_disagg_txt_hist_2006_2016.zip``): ``open_interest``, ``mm_long/short/net``
  (managed money), ``prod_merc_net``, ``swap_net``, ``other_net``, ``comm_net``
  (producer/merchant + swap dealers) and ``mm_net_pct_oi``, ``comm_net_pct_oi``.

Dates are the report's as-of date (a Tuesday); ``release: cftc_weekly`` (the
default here) makes the alignment move them to the Friday publication, once.
Header names are matched after normalisation (case, punctuation, the CFTC's
doubled underscores), so the legacy and disaggregated layouts both parse.
Base URL: ``$CBI_CFTC_BASE_URL`` (default ``https://www.cftc.gov/files/dea/history``).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, field_validator

from cbi_toolkit.errors import SourceError
from cbi_toolkit.lazy import lazy_import
from cbi_toolkit.sources import http
from cbi_toolkit.sources.live import LiveSource

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
else:
    pd = lazy_import("pandas")
    np = lazy_import("numpy")

CFTC_BASE_URL = "https://www.cftc.gov/files/dea/history"
DISAGG_HIST = ("fut_disagg_txt_hist_2006_2016.zip", 2006, 2016)

#: derived column -> (long fields, short fields), each a list of normalised CFTC names
LEGACY = {
    "noncomm": (["noncommercial_positions_long_all"], ["noncommercial_positions_short_all"]),
    "comm": (["commercial_positions_long_all"], ["commercial_positions_short_all"]),
}
LEGACY_PCT = {
    "noncomm": (["of_oi_noncommercial_long_all"], ["of_oi_noncommercial_short_all"]),
    "comm": (["of_oi_commercial_long_all"], ["of_oi_commercial_short_all"]),
}
DISAGG = {
    "mm": (["m_money_positions_long_all"], ["m_money_positions_short_all"]),
    "prod_merc": (["prod_merc_positions_long_all"], ["prod_merc_positions_short_all"]),
    "swap": (["swap_positions_long_all"], ["swap_positions_short_all"]),
    "other": (["other_rept_positions_long_all"], ["other_rept_positions_short_all"]),
    "comm": (["prod_merc_positions_long_all", "swap_positions_long_all"],
             ["prod_merc_positions_short_all", "swap_positions_short_all"]),
}
DISAGG_PCT = {
    "mm": (["pct_of_oi_m_money_long_all"], ["pct_of_oi_m_money_short_all"]),
    "comm": (["pct_of_oi_prod_merc_long_all", "pct_of_oi_swap_long_all"],
             ["pct_of_oi_prod_merc_short_all", "pct_of_oi_swap_short_all"]),
}


#: archive bodies already downloaded in this process (two markets share one archive)
_MEMO: dict[str, bytes] = {}
_MEMO_MAX = 64


def base_url() -> str:
    return os.environ.get("CBI_CFTC_BASE_URL", CFTC_BASE_URL).rstrip("/")


def current_year() -> int:
    return datetime.now(UTC).year


def norm(name: str) -> str:
    """``"% of OI-Noncommercial-Long (All)"`` -> ``of_oi_noncommercial_long_all``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


class CftcSource(LiveSource):
    """Net positions of CFTC contract markets, ``markets: {alias: code}`` (soybean oil:
    ``{zl: "007601"}``); provider columns are ``{alias}_{derived}``, e.g.
    ``zl_noncomm_net_pct_oi``, ``zl_mm_net``."""

    kind: Literal["cftc"] = "cftc"
    markets: dict[str, str] = Field(..., min_length=1,
                                    description="alias -> CFTC contract market code")
    report: Literal["legacy", "disaggregated"] = "disaggregated"
    release: Literal["same_day", "cftc_weekly"] = "cftc_weekly"
    ffill_limit: int = Field(10, ge=0, le=260)

    cache_folder: ClassVar[str] = "cftc"
    overlap_days: ClassVar[int] = 21

    @field_validator("markets", mode="before")
    @classmethod
    def _quoted(cls, markets: Any) -> Any:
        if isinstance(markets, dict):
            for alias, code in markets.items():
                if not isinstance(code, str):
                    raise ValueError(f"markets: {alias}: code {code!r} must be quoted in YAML "
                                     "(\"007601\"); unquoted, leading zeros are lost")
        return markets

    @field_validator("markets")
    @classmethod
    def _codes(cls, markets: dict[str, str]) -> dict[str, str]:
        for alias, code in markets.items():
            if not alias.isidentifier() or not re.fullmatch(r"[0-9A-Z]{6}", str(code)):
                raise ValueError(f"markets: {alias!r}: {code!r} must map an identifier to a "
                                 "6-character CFTC code (quote it: \"007601\")")
        return markets

    @property
    def live_label(self) -> str:
        return f"cftc {self.report} " + ",".join(self.markets.values())

    def cache_keys(self) -> list[str]:
        return [f"{self.report}_{code}" for code in self.markets.values()]

    def combine(self, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
        parts = []
        for alias, code in self.markets.items():
            frame = frames[f"{self.report}_{code}"]
            parts.append(frame.add_prefix(f"{alias}_"))
        return pd.concat(parts, axis=1, join="outer").sort_index()

    def archives(self, since: pd.Timestamp | None) -> list[str]:
        """Archive file names covering ``since`` (or ``start``) to the current year."""
        first = pd.Timestamp(since if since is not None else self.start).year
        names: list[str] = []
        for year in range(first, current_year() + 1):
            if self.report == "legacy":
                name = f"deacot{year}.zip"
            elif DISAGG_HIST[1] <= year <= DISAGG_HIST[2]:
                name = DISAGG_HIST[0]
            elif year < DISAGG_HIST[1]:
                continue  # the disaggregated report starts in 2006
            else:
                name = f"fut_disagg_txt_{year}.zip"
            if name not in names:
                names.append(name)
        return names

    def fetch(self, key: str, since: pd.Timestamp | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        code = key.rsplit("_", 1)[1]
        names = self.archives(since)
        if not names:
            raise SourceError(f"{self.live_label}: no {self.report} archives from {self.start}")
        parts = []
        for i, name in enumerate(names):
            url = f"{base_url()}/{name}"
            try:
                body = _MEMO.get(url) or http.get(url, f"{self.live_label} ({name})", expect="binary")
            except SourceError as exc:
                # the current year's archive does not exist until its first report
                if i == len(names) - 1 and "HTTP 404" in str(exc) and len(names) > 1:
                    continue
                raise
            parts.append(self.parse(body, name, code))
            if len(_MEMO) >= _MEMO_MAX:
                _MEMO.pop(next(iter(_MEMO)))
            _MEMO[url] = body
        frame = pd.concat(parts).sort_index()
        frame = frame[~frame.index.duplicated(keep="last")]
        if frame.empty:
            raise SourceError(f"{self.live_label}: no rows for market {code} in "
                              f"{', '.join(names)}")
        return frame, {"url": f"{base_url()}/", "archives": names, "code": code,
                       "report": self.report}

    def parse(self, body: bytes, name: str, code: str) -> pd.DataFrame:
        """One archive (zip, or its text file as is) -> derived columns of ``code``."""
        label = f"cftc {self.report} {code} ({name})"
        text = unzip_text(body, label)
        try:
            raw = pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False,
                              skipinitialspace=True, encoding="latin-1")
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise SourceError(f"{label}: COT text cannot be parsed "
                              f"({str(exc).splitlines()[0]})") from None
        raw.columns = [norm(c) for c in raw.columns]
        code_col = _find(raw, "contract_market_code", label)
        date_col = _find(raw, "yyyy_mm_dd", label)
        rows = raw[raw[code_col].str.strip().str.zfill(6) == code]
        nets, pcts = (LEGACY, LEGACY_PCT) if self.report == "legacy" else (DISAGG, DISAGG_PCT)
        cols = {"open_interest": _num(rows, ["open_interest_all"], label)}
        for prefix, (longs, shorts) in nets.items():
            long_, short = _num(rows, longs, label), _num(rows, shorts, label)
            if len(longs) == 1:
                cols[f"{prefix}_long"], cols[f"{prefix}_short"] = long_, short
            cols[f"{prefix}_net"] = long_ - short
        for prefix, (longs, shorts) in pcts.items():
            cols[f"{prefix}_net_pct_oi"] = _num(rows, longs, label) - _num(rows, shorts, label)
        dates = pd.to_datetime(rows[date_col].str.strip(), format="%Y-%m-%d", errors="coerce")
        if dates.isna().any():
            raise SourceError(f"{label}: report date {rows[date_col][dates.isna()].iloc[0]!r} "
                              "is not YYYY-MM-DD")
        return pd.DataFrame(cols, index=pd.DatetimeIndex(dates, name="date")).sort_index()


def unzip_text(body: bytes, label: str) -> bytes:
    if not body.startswith(b"PK"):
        first = body[:4096].split(b"\n", 1)[0]
        if b"," not in first or b"market" not in first.lower():
            raise SourceError(f"{label}: neither a zip archive nor a COT text file")
        return body
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            members = [n for n in zf.namelist() if n.lower().endswith(".txt")]
            if not members:
                raise SourceError(f"{label}: archive holds no .txt file ({zf.namelist()})")
            return zf.read(members[0])
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise SourceError(f"{label}: corrupt or truncated zip archive ({exc})") from None


def _find(raw: pd.DataFrame, part: str, label: str) -> str:
    hits = [c for c in raw.columns if part in c]
    if not hits:
        raise SourceError(f"{label}: no column like {part!r}; the COT layout changed")
    return hits[0]


def _num(rows: pd.DataFrame, fields: list[str], label: str) -> np.ndarray:
    total = np.zeros(len(rows))
    for field in fields:
        if field not in rows.columns:
            raise SourceError(f"{label}: no column {field!r}; the COT layout changed or the "
                              "report type is wrong")
        cells = rows[field].str.strip()
        values = pd.to_numeric(cells.where(~cells.isin(["", "."])), errors="coerce")
        bad = values.isna() & ~cells.isin(["", "."])
        if bad.any():
            raise SourceError(f"{label}: {field} holds {cells[bad].iloc[0]!r}, not a number")
        total = total + values.to_numpy(dtype=float)
    return total
