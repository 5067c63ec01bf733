"""The Streamlit dashboard: the entry (Home.py) and the modules the page scripts in pages/ call."""
