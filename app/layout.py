"""Shared chrome: the page list, the sidebar, the run picker and the fork form.

Pages call these so every page has the same sidebar and the same keys in session state:
  selected_runs: the runs the user is looking at (shared across pages)
  fork_source / fork_sets_text / fork_from: what the fork form is prefilled with
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import run_forms, state
from app.markdown import escape
from trainer import runs

ROOT = Path(__file__).resolve().parents[1]
PAGES_DIR = ROOT / "pages"
# (file in pages/, title, url path, icon); the first is the default page served at "/".
PAGE_SPECS = (
    ("home.py", "Runs", "runs", ":material/list:"),
    ("live.py", "Live", "live", ":material/monitoring:"),
    ("samples.py", "Samples", "samples", ":material/notes:"),
    ("config.py", "Config", "config", ":material/tune:"),
    ("diagnosis.py", "Diagnosis", "diagnosis", ":material/stethoscope:"),
    ("system.py", "System", "system", ":material/memory:"),
    ("compare.py", "Compare", "compare", ":material/compare_arrows:"),
)


def page(name: str) -> st.Page:
    """The st.Page for pages/<name> (also what st.switch_page is given)."""
    for file, title, url, icon in PAGE_SPECS:
        if file == name:
            return st.Page(PAGES_DIR / file, title=title, url_path=url, icon=icon, default=file == "home.py")
    raise KeyError(f"no page {name!r}; pages are {[spec[0] for spec in PAGE_SPECS]}")


def all_pages() -> list[st.Page]:
    return [page(spec[0]) for spec in PAGE_SPECS]


def sidebar() -> None:
    """Where the runs are, shown on every page."""
    with st.sidebar:
        st.caption(f"Runs directory: `{state.runs_dir()}` (set {runs.RUNS_DIR_ENV} to change)")


def selected_runs() -> list[str]:
    return list(st.session_state.get("selected_runs", []))


def select_runs(run_ids: list[str]) -> None:
    st.session_state["selected_runs"] = list(run_ids)


def run_picker(label: str = "Runs", key: str = "run_picker", multiple: bool = True) -> list[str]:
    """Pick one or several runs; the choice is shared with the other pages.

    ?run=ID in the URL (the runs table's Live links) selects that run once.
    """
    options = state.run_ids()
    if not options:
        return []
    asked = st.query_params.get("run")
    if asked is not None:
        del st.query_params["run"]
        if asked in options:  # ids come from the browser: only an existing run is accepted
            select_runs([asked])
            st.session_state.pop(key, None)
    chosen = [r for r in selected_runs() if r in options] or options[:1]
    if multiple:
        if key not in st.session_state:
            st.session_state[key] = chosen
        st.session_state[key] = [r for r in st.session_state[key] if r in options]
        picked = st.multiselect(label, options, key=key)
    else:
        if key not in st.session_state or st.session_state[key] not in options:
            st.session_state[key] = chosen[0]
        picked = [st.selectbox(label, options, key=key)]
    if picked:
        select_runs(picked)
    return picked


def not_restartable(status: dict | None) -> str | None:
    """Why Resume, Fork and a remedy's new run are off for this run (None: they are on): a script's run
    or an imported log, in the words `python -m trainer resume` refuses it with."""
    why = runs.restart_refusal(status, "resume or fork")
    return f"This run {why}." if why else None


def open_fork_form(run_id: str, sets: list[str] | None = None) -> None:
    """Prefill the fork form (the alert banner's remedy button and the runs table call this)."""
    st.session_state["fork_source"] = run_id
    st.session_state["fork_sets_text"] = "\n".join(sets or [])


def fork_form(key: str = "fork") -> None:
    """The fork form for st.session_state["fork_source"], if one was asked for."""
    source = st.session_state.get("fork_source")
    if not source:
        return
    run_dir = state.run_dir_of(source)
    with st.container(border=True):
        st.subheader(f"Fork {source}")
        checkpoints = runs.available_checkpoints(run_dir) if run_dir.is_dir() else []
        if not checkpoints:
            st.info(f"Run {source} has no checkpoint yet, so it cannot be forked; wait for its first checkpoint.")
            if st.button("Close", key=f"{key}_close"):
                st.session_state.pop("fork_source", None)
                st.rerun()
            return
        suggested = f"{source}-fork"
        n = 2
        while (run_dir.parent / suggested).exists():
            suggested, n = f"{source}-fork{n}", n + 1
        errors = st.session_state.get(f"{key}_errors", {})
        with st.form(f"{key}_form"):
            choices = run_forms.checkpoint_choices(checkpoints, st.session_state.get(f"{key}_from"))
            from_ = st.selectbox("From checkpoint", choices, key=f"{key}_from")
            _field_error(errors, "from")
            new_id = st.text_input("New run id", value=suggested, key=f"{key}_new_id")
            _field_error(errors, "new_id")
            sets_text = st.text_area(
                "Changes (key=value, one per line)", key="fork_sets_text", help="e.g. lr=3e-4 or grad_clip=1.0"
            )
            _field_error(errors, "sets")
            submitted = st.form_submit_button("Start fork", type="primary")
        if submitted:
            result = run_forms.start_fork(state.runs_dir(), source, from_, new_id, sets_text)
            st.session_state[f"{key}_errors"] = result.field_errors
            if result.ok:
                state.note_change(result.run_id)
                st.session_state.pop("fork_source", None)
                select_runs([result.run_id, source])
                st.session_state["flash"] = f"Started fork {result.run_id} of {source} (pid {result.pid})."
            st.rerun()
        if st.button("Cancel fork", key=f"{key}_cancel"):
            st.session_state.pop("fork_source", None)
            st.rerun()


def _field_error(errors: dict, name: str) -> None:
    if errors.get(name):
        refusal(errors[name])


def refusal(message: str) -> None:
    """A refused form or control, as text: messages quote what the user typed, and markdown would
    turn `*1e-3*` or `[a](b)` in it into formatting, so the page would not say what the CLI says."""
    st.error(escape(message), icon=":material/error:")


def warning(message: str) -> None:
    """A reader's warning (a vanished run, a read error): it quotes run ids and paths, whose
    underscores and brackets markdown would turn into formatting."""
    st.warning(escape(message))


def flash() -> None:
    """Show (once) the message left by the last action, as a toast: the page's live parts rerun
    without the page, so a message in its body stayed on screen until the next click, long after
    the run it announced had stopped."""
    message = st.session_state.pop("flash", None)
    if message:
        st.toast(escape(message), icon=":material/check_circle:", duration="long")


def no_runs_guard() -> None:
    """Stop the page with a pointer to the Runs page when there are no runs yet."""
    if not state.run_ids():
        st.info("No runs yet. Start one on the Runs page.")
        st.page_link(page("home.py"), label="Go to Runs", icon=":material/list:")
        st.stop()


def single_run_header(key: str):
    """The top of a one-run page: last action's message, guard, run picker; stops on a vanished run."""
    flash()
    no_runs_guard()
    run_id = run_picker("Run", key=key, multiple=False)[0]
    view = state.run_view(run_id)
    if not view.exists:
        warning(view.error)
        st.stop()
    skipped_note(view)
    return run_id, view


def skipped_note(view) -> None:
    """What the reader left out of a run (unreadable lines, an unreadable status.json or
    config.yaml), as the reader words it (RunSnapshot.skipped); nothing when all was read."""
    if view.skipped:
        st.caption(escape(f"{view.run_id}: " + "; ".join(view.skipped)), help="The rest of the run is shown.")
