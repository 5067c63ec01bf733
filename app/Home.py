"""The dashboard's entry point.

    cd <repository root> && streamlit run app/Home.py

Start it from the repository root: Streamlit reads .streamlit/config.toml from the current
folder (127.0.0.1 only, no usage statistics, XSRF protection). Pages live in the top-level
pages/ folder and are registered here, since Streamlit only discovers app/pages/ by itself.
"""

import sys
from pathlib import Path

# `streamlit run app/Home.py` puts only app/ on sys.path; the pages import `app` and `trainer`.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import layout, warmup  # noqa: E402

warmup.start()  # once per process: the chart code loads while the first page is being read

st.set_page_config(page_title="Training doctor", page_icon=":material/monitor_heart:", layout="wide")
navigation = st.navigation(layout.all_pages())
layout.sidebar()
navigation.run()
