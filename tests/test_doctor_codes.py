"""Each detector describes itself (code, title, cause, severity, thresholds, healthy reason), and the
codes table of docs/doctor.md agrees with the detectors, so neither can drift from the other."""

import re
from pathlib import Path

import pytest

from trainer.doctor import CODES, DETECTORS, OnlineDoctor, scenarios
from trainer.doctor.base import SEVERITY_RANK, Detector, headline
from trainer.doctor.report import CAUSES, TITLES

DOCS = Path(__file__).resolve().parents[1] / "docs" / "doctor.md"


def _codes_table() -> dict[str, dict[str, str]]:
    """The table under '## Codes' in docs/doctor.md: {code: {column: cell}}, in the table's order."""
    section = DOCS.read_text(encoding="utf-8").split("\n## Codes\n", 1)[1]
    rows = []
    for line in section.lstrip("\n").splitlines():
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, _, *body = rows
    return {row[0].strip("`"): dict(zip(header, row)) for row in body}


def _written(value) -> list[str]:
    """The ways the docs may write a threshold: 6, 1e-7, 15%, 1/100 (of a ratio below 1 or a factor)."""
    forms = [f"{value:g}", f"{value:g}".replace("e-0", "e-")]
    if 0 < value < 1:
        forms += [f"{value:.0%}", f"1/{1 / value:g}"]
    if value > 1:
        forms.append(f"1/{value:g}")
    return forms


def _states(text: str, value) -> bool:
    return any(re.search(rf"(?<![\d.]){re.escape(form)}(?![\d%]|\.\d)", text) for form in _written(value))


def test_codes_table_lists_every_detector_in_run_order():
    assert list(_codes_table()) == list(CODES), "docs/doctor.md's codes table: one row per detector, in run order"


@pytest.mark.parametrize("detector", DETECTORS, ids=CODES)
def test_codes_table_row_has_the_detectors_title_and_severity(detector):
    row = _codes_table()[detector.code]
    assert row["title"] == detector.title
    assert re.match(r"\w+", row["severity"]).group() == detector.severity


@pytest.mark.parametrize("detector", DETECTORS, ids=CODES)
def test_codes_table_row_states_every_threshold_with_its_value(detector):
    row = " | ".join(_codes_table()[detector.code].values())
    wrong = [f"{name} = {getattr(detector, name)!r}" for name in detector.thresholds]
    wrong = [w for w, name in zip(wrong, detector.thresholds) if not _states(row, getattr(detector, name))]
    assert not wrong, f"docs/doctor.md's row for {detector.code} does not state {', '.join(wrong)}: update the row"


@pytest.mark.parametrize("detector", DETECTORS, ids=CODES)
def test_every_detector_describes_itself(detector):
    assert detector.title and detector.cause.endswith(".")
    assert detector.severity in SEVERITY_RANK
    assert set(detector.kind.split("+")) <= {"metrics", "grads", "samples"}
    reason = detector(OnlineDoctor().ctx).healthy_reason()
    assert reason and "{" not in reason


def test_codes_are_unique():
    assert len(set(CODES)) == len(CODES) == len(DETECTORS)


def test_a_detector_without_a_title_or_cause_is_refused_with_what_to_do():
    with pytest.raises(TypeError, match="lacks title, cause, z_threshold.*Adding a detector"):

        class Undescribed(Detector):
            code = "undescribed"
            thresholds = ("z_threshold",)


def test_the_report_takes_titles_and_causes_from_the_detectors():
    assert TITLES == {d.code: d.title for d in DETECTORS}
    assert CAUSES == {d.code: d.cause for d in DETECTORS}


def test_every_code_has_a_failure_scenario():
    assert set(scenarios.FAILURES.values()) == set(CODES), "add a shape to trainer/doctor/scenarios/failures.py"


def test_an_alerts_headline_names_its_step_unless_its_message_does():
    said = {
        "code": "variance_collapse",
        "step": 3700,
        "message": "pred_std 3e-05 vs target_std 0.74, ratio 1:93503 at step 3700",
    }
    assert headline(said) == "variance_collapse"
    assert headline({**said, "message": "pred_std 3e-05 at step 37000"}) == "variance_collapse at step 3700"
    assert headline({**said, "message": "flat"}) == "variance_collapse at step 3700"
    assert headline({"code": "slowdown", "step": None, "message": "x"}) == "slowdown"
