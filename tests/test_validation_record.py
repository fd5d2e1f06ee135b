"""The validation record: results files follow the DESIGN.md schema, failing checks are kept,
and REPORT.md is generated from whatever results files exist."""

import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:           # `validation` is a folder of the repo, not an installed package
    sys.path.insert(0, str(ROOT))

from validation._record import CHECK_KEYS, Check, read_results, write_results  # noqa: E402
from validation.run import discover, render_report, write_report  # noqa: E402


def _checks():
    return [
        Check("demo.ok", "a check that passes", "Someone 2002, J Clin Oncol 20:4713", 7.4, "d", "6-9", True),
        Check.at_least("demo.ratio", "throughput ratio", "measured in this run", 55.0, "x", 100,
                       note="baseline 64 patients/s"),
        Check.at_most("demo.nan", "agreement that could not be measured", "measured in this run", float("nan"),
                      "relative", 1e-4),
    ]


def test_write_results_schema(tmp_path):
    path = write_results("demo", _checks(), extra={"table": [{"method": "a", "N": 1}], "mode": "quick"},
                         results_dir=tmp_path)
    assert path == tmp_path / "demo.json"
    doc = json.loads(path.read_text())
    for key in ("generated", "commit", "machine", "checks"):
        assert key in doc
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["generated"])
    assert re.fullmatch(r"[0-9a-f]{40}|uncommitted", doc["commit"])
    assert re.match(r"\d+ CPU cores?, (no )?GPU", doc["machine"])
    assert doc["mode"] == "quick" and doc["table"] == [{"method": "a", "N": 1}]
    assert [c["id"] for c in doc["checks"]] == ["demo.ok", "demo.ratio", "demo.nan"]
    for c in doc["checks"]:
        assert tuple(k for k in c if k != "note") == CHECK_KEYS
    ok, ratio, nan = doc["checks"]
    assert ok == {"id": "demo.ok", "description": "a check that passes", "source": "Someone 2002, J Clin Oncol 20:4713",
                  "value": 7.4, "unit": "d", "target": "6-9", "passed": True}
    # failing checks stay in the file, marked failed
    assert ratio["passed"] is False and ratio["target"] == ">= 100" and ratio["note"] == "baseline 64 patients/s"
    assert nan["passed"] is False and nan["value"] is None          # JSON has no NaN
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


def test_check_verdicts_and_validation(tmp_path):
    assert Check.at_least("a", "d", "s", 100.0, "x", 100).passed
    assert not Check.at_least("a", "d", "s", None, "x", 100).passed
    assert Check.at_most("a", "d", "s", 0, "n", 0).passed
    assert Check.within("a", "d", "s", 7.4, "d", 6, 9).target == "6-9"
    assert not Check.within("a", "d", "s", math.inf, "d", 6, 9).passed
    with pytest.raises(ValueError, match="duplicate check id"):
        write_results("demo", [_checks()[0], _checks()[0]], results_dir=tmp_path)
    with pytest.raises(ValueError, match="schema keys"):
        write_results("demo", _checks(), extra={"checks": []}, results_dir=tmp_path)
    with pytest.raises(ValueError, match="area"):
        write_results("../x", _checks(), results_dir=tmp_path)
    with pytest.raises(TypeError):
        Check("a", "d", "s", 1.0, "x", 100, True)          # target must be a string
    # dict checks are accepted and numpy values become plain JSON
    np = pytest.importorskip("numpy")
    write_results("dicts", [dict(id="d.1", description="d", source="s", value=np.float64(2.5), unit="",
                                 target="> 1", passed=np.bool_(True))], results_dir=tmp_path)
    doc = json.loads((tmp_path / "dicts.json").read_text())
    assert doc["checks"][0]["value"] == 2.5 and doc["checks"][0]["passed"] is True


def test_report_from_results_dir(tmp_path):
    results, figures = tmp_path / "results", tmp_path / "figures"
    figures.mkdir()
    (figures / "demo_profile.png").write_bytes(b"\x89PNG")
    (figures / "unrelated.svg").write_text("<svg/>")
    write_results("demo", _checks(), extra={"table": [{"method": "pbpk", "N": 10000, "patients/s": 3000.0}]},
                  results_dir=results)
    write_results("other", [Check("other.x", "x", "src", 1, "", "1", True)], results_dir=results)
    (results / "_last_run.json").write_text(json.dumps({"scripts": []}))     # skipped: starts with "_"
    assert list(read_results(results)) == ["demo", "other"]

    path = write_report(results, tmp_path / "REPORT.md", figures,
                        run_log=[{"script": "validation.x.y", "quick": True, "status": "crashed",
                                  "error": "RuntimeError: boom", "seconds": 1.0, "started": "now"}])
    text = path.read_text()
    assert "make validate" in text.split("\n\n")[1]                           # how to regenerate, at the top
    assert "**2 / 4 checks passed**" in text
    assert "## demo" in text and "## other" in text
    assert "**1 / 3 checks passed.**" in text and "**1 / 1 checks passed.**" in text
    row = next(line for line in text.splitlines() if line.startswith("| `demo.ratio`"))
    assert "**FAIL**" in row and ">= 100" in row and "measured in this run" in row
    assert "| `demo.ok` | a check that passes | 7.4 | d | 6-9 | Someone 2002, J Clin Oncol 20:4713 | PASS |" in text
    assert "Failed checks:" in text and "outside the target >= 100 — baseline 64 patients/s" in text
    assert "`demo.nan`" in text and "no value was measured" in text
    assert "| pbpk | 10000 | 3000 |" in text                                 # the area's extra table
    assert "[demo_profile.png](figures/demo_profile.png)" in text
    assert "## Other figures" in text and "[unrelated.svg](figures/unrelated.svg)" in text
    assert "**crashed**: RuntimeError: boom" in text
    generated = json.loads((results / "demo.json").read_text())["generated"]
    assert generated in text


def test_report_empty_and_unreadable(tmp_path):
    text = render_report(tmp_path, None, tmp_path, run_log=[])
    assert "0 / 0 checks passed" in text and "No results files found" in text
    (tmp_path / "broken.json").write_text("{not json")
    text = render_report(tmp_path, None, tmp_path, run_log=[])
    assert "## broken" in text and "could not be read" in text


def test_discover_finds_the_benchmark():
    names = discover(["performance"])
    assert "validation.performance.bench_pbpk" in names
    assert discover(["no_such_area"]) == []


def test_parts_of_an_area_are_written_independently(tmp_path):
    from validation._record import Check, write_results

    a = [Check.at_most("psma.kidney", "kidney", "VISION", 0.4, "Gy/GBq", 0.6)]
    b = [Check.at_most("psma.recovery.mdape", "MdAPE", "issue", 5.0, "%", 10.0)]
    write_results("psma", a, {"table": [{"x": 1}]}, results_dir=tmp_path, part="published")
    write_results("psma", b, {"n": 100}, results_dir=tmp_path, part="recovery")
    a2 = [Check.at_most("psma.kidney", "kidney", "VISION", 0.7, "Gy/GBq", 0.6)]
    doc = json.loads(write_results("psma", a2, {"table": []}, results_dir=tmp_path, part="published").read_text())
    assert [c["id"] for c in doc["checks"]] == ["psma.recovery.mdape", "psma.kidney"]
    assert doc["checks"][1]["passed"] is False and doc["recovery"] == {"n": 100} and doc["published"] == {"table": []}
    assert doc["parts"] == {"recovery": ["psma.recovery.mdape"], "published": ["psma.kidney"]}
    with pytest.raises(ValueError, match="another part"):
        write_results("psma", a, results_dir=tmp_path, part="other")
