"""The load benchmark's core for a few seconds (issue 12): 2 writers at 100 rows/s, one browser
session on the Runs and Live pages. Every row logged is in the files, in order; the Live page's
caption, the server's refresh log and its RSS were all read. The figures come from
`python benchmarks/load.py` (README), not from here.

    REQUIRE_BROWSER=1 python -m pytest -m browser tests/test_load_smoke.py
"""

from pathlib import Path

import pytest

from app.harness import CHROMIUM

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():  # test_browser_e2e has already failed or skipped the same way
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[1]


def test_the_load_benchmark_loses_no_row_and_reads_every_figure(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import load

    result = load.measure(tmp_path, runs=2, rate=100, sessions=1, seconds=3, rss_every_s=1.5)
    assert result["runs_with_rows_dropped"] == {}
    assert result["rows_logged"] >= 2 * 100 * 3  # the writers ran for the whole test at least
    assert result["caption_changes_seen"] >= 1 and result["live_refresh_in_server_ms"]["n"] >= 1
    assert len(result["server_rss_mb"]) >= 3 and all(mb > 50 for _, mb in result["server_rss_mb"])
