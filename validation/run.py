"""Regenerate the validation record: run every validation script, then write REPORT.md.

    python -m validation.run [--quick] [--only AREA]      (``make validate`` / ``make validate-quick``)

A validation script is any module in ``validation/performance/``, ``validation/published/``,
``validation/recovery/``, ``validation/hybrid/`` or ``validation/closed_loop/`` (names not starting with "_") that
exposes ``main(quick: bool) -> None``; it writes its own ``validation/results/<area>.json``
through ``validation._record.write_results``.  ``--only`` takes a folder name (e.g.
``performance``), a module name (``bench_pbpk``) or both (``performance.bench_pbpk``); it
may be repeated.

REPORT.md is then rebuilt from ALL ``validation/results/*.json`` files, whichever scripts ran:
per area a table of checks with PASS/FAIL, the failed checks with their reasons, the area's
extra table (if any), links to its figures in ``validation/figures/``, and when/where the
results were generated.  A script that crashes is listed in the report (and the command exits
with status 1); its previous results file, if any, stays and is marked with its own date.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from validation._record import FIGURES_DIR, RESULTS_DIR, VALIDATION_DIR, git_commit, machine_description, read_results

__all__ = ["discover", "run_scripts", "write_report", "render_report", "main"]

SCRIPT_DIRS = ("performance", "published", "recovery", "hybrid", "closed_loop")
REPORT_PATH = VALIDATION_DIR / "REPORT.md"
RUN_LOG = ".last_run.json"      # beside results/, so that results/ holds only area files
FIGURE_EXTS = (".png", ".svg", ".pdf", ".jpg", ".jpeg", ".gif", ".html")


# =========================================================================== discovery and running
def discover(only=None, root: Path = VALIDATION_DIR) -> list[str]:
    """Module names (``validation.<folder>.<module>``) of the validation scripts, sorted.

    Every candidate module is imported to check that it has ``main``; a module that fails to
    import is still returned (running it reports the import error)."""
    wanted = set(only or ())
    found = []
    for folder in SCRIPT_DIRS:
        path = root / folder
        if not path.is_dir():
            continue
        for info in sorted(pkgutil.iter_modules([str(path)]), key=lambda i: i.name):
            if info.name.startswith("_") or info.ispkg:
                continue
            if wanted and not ({folder, info.name, f"{folder}.{info.name}"} & wanted):
                continue
            name = f"validation.{folder}.{info.name}"
            try:
                module = importlib.import_module(name)
            except Exception:  # noqa: BLE001 - reported when run
                found.append(name)
                continue
            if callable(getattr(module, "main", None)):
                found.append(name)
    return found


def run_scripts(names, quick: bool) -> list[dict]:
    """Run each script's ``main(quick=...)``; returns one log entry per script."""
    log = []
    for name in names:
        print(f"\n=== {name} ({'quick' if quick else 'full'}) ===", flush=True)
        t0 = time.perf_counter()
        entry = {"script": name, "quick": quick, "started": _now()}
        try:
            module = importlib.import_module(name)
            module.main(quick=quick)
            entry["status"] = "ok"
        except BaseException as e:  # noqa: BLE001 - a crash must be recorded, not hide the other areas
            if isinstance(e, KeyboardInterrupt):
                raise
            entry["status"] = "crashed"
            entry["error"] = f"{type(e).__name__}: {e}"
            entry["traceback"] = traceback.format_exc()
            print(entry["traceback"], file=sys.stderr, flush=True)
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        log.append(entry)
    return log


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# =========================================================================== the report
def _cell(x) -> str:
    """A value as a Markdown table cell."""
    if x is None:
        s = "—"
    elif isinstance(x, bool):
        s = "yes" if x else "no"
    elif isinstance(x, float):
        s = f"{x:.4g}"
    elif isinstance(x, (list, dict)):
        s = json.dumps(x)
    else:
        s = str(x)
    return s.replace("|", "\\|").replace("\n", " ")


def _rows(by_name, key: str):
    """{name: {column: value}} as table rows with the name under ``key`` (None if not that shape);
    nested values (curves) are left to the JSON."""
    if isinstance(by_name, dict) and by_name and all(isinstance(v, dict) for v in by_name.values()):
        return [{key: name, **{k: v for k, v in values.items() if not isinstance(v, (dict, list))}}
                for name, values in by_name.items()]
    return None


def _table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _reason(c: dict) -> str:
    if c.get("value") is None:
        why = "no value was measured"
    else:
        why = f"value {_cell(c.get('value'))} {c.get('unit', '')}".rstrip() + f" is outside the target {c.get('target')}"
    note = c.get("note")
    return why + (f" — {note}" if note else "")


def _figures_for(area: str, doc: dict, figures: list[Path], report_dir: Path) -> list[tuple[str, str]]:
    listed = set()
    for f in doc.get("figures", []) or []:
        listed.add(Path(str(f)).name)
    out = []
    for p in figures:
        if p.name in listed or p.stem == area or p.stem.startswith(area + "_") or p.stem.startswith(area + "."):
            out.append((p.name, os.path.relpath(p, report_dir)))
    return out


def _counterfactual_rows(cf):
    """The individual-treatment-effect scores of a closed-loop part, one row per twin."""
    if not isinstance(cf, dict):
        return None
    rows = []
    for twin in ("twin_after_cycle_1", "baseline_only"):
        if isinstance(cf.get(twin), dict):
            rows.append({"twin": twin, **{k: round(v, 4) for k, v in cf[twin].items()},
                         "true_ate": round(cf.get("true_ate", float("nan")), 4),
                         "true_ite_sd": round(cf.get("true_ite_sd", float("nan")), 4),
                         "patients": cf.get("patients"), "unit": cf.get("unit")})
    return rows


def render_report(results_dir: str | Path = RESULTS_DIR, figures_dir: str | Path | None = FIGURES_DIR,
                  report_dir: str | Path = VALIDATION_DIR, run_log: list[dict] | None = None) -> str:
    """REPORT.md text from every results file in ``results_dir`` (and figures in ``figures_dir``;
    links are relative to ``report_dir``, where the report will be written)."""
    results_dir, report_dir = Path(results_dir), Path(report_dir)
    docs = read_results(results_dir)
    figures = []
    if figures_dir is not None and Path(figures_dir).is_dir():
        figures = sorted(p for p in Path(figures_dir).rglob("*") if p.suffix.lower() in FIGURE_EXTS)
    if run_log is None:
        log_path = results_dir.parent / RUN_LOG
        try:
            run_log = json.loads(log_path.read_text())["scripts"] if log_path.exists() else []
        except (OSError, ValueError, KeyError, TypeError):
            run_log = []

    sha, dirty = git_commit()
    total = sum(len(d.get("checks", [])) for d in docs.values())
    passed = sum(bool(c.get("passed")) for d in docs.values() for c in d.get("checks", []))
    lines = [
        "# Validation report",
        "",
        "Regenerate with `make validate` (or `python -m validation.run`; `--quick` for the CI smoke version, "
        "`--only AREA` for one area). This file is generated from `validation/results/*.json` — do not edit it "
        "by hand. Every check names its source and target; failing checks stay in the record.",
        "",
        f"Report generated {_now()} from commit `{sha}`{' (with uncommitted changes)' if dirty else ''} on "
        f"{machine_description()}.",
        "",
        f"**{passed} / {total} checks passed** across {len(docs)} area{'s' if len(docs) != 1 else ''}.",
        "",
    ]
    if not docs:
        lines += [f"No results files found in `{_rel(results_dir, report_dir)}`.", ""]
    else:
        lines += ["## Summary", ""]
        rows = []
        for area, d in docs.items():
            ch = d.get("checks", [])
            rows.append([f"[{area}](#{_anchor(area)})", f"{sum(bool(c.get('passed')) for c in ch)} / {len(ch)}",
                         d.get("mode", "—"), d.get("generated", "—"), _short(d.get("commit")) +
                         (" (dirty)" if d.get("dirty") else ""), d.get("machine", "—")])
        lines += _table(["area", "passed", "mode", "generated", "commit", "machine"], rows) + [""]

    for area, d in docs.items():
        checks = d.get("checks", [])
        n_ok = sum(bool(c.get("passed")) for c in checks)
        lines += [f"## {area}", ""]
        rel = _rel(results_dir / f"{area}.json", report_dir)
        lines += [f"Results file: [`{rel}`]({rel}) — generated {d.get('generated', '?')}, commit "
                  f"`{_short(d.get('commit'))}`{' (dirty)' if d.get('dirty') else ''}, {d.get('machine', '?')}"
                  + (f", mode: {d['mode']}" if d.get("mode") else "") + ".", ""]
        if "error" in d:
            lines += [f"**This results file could not be read:** {d['error']}", ""]
        lines += [f"**{n_ok} / {len(checks)} checks passed.**", ""]
        if checks:
            lines += _table(["id", "description", "value", "unit", "target", "source", "result"],
                            [[f"`{c.get('id')}`", c.get("description"), c.get("value"), c.get("unit"),
                              c.get("target"), c.get("source"), "PASS" if c.get("passed") else "**FAIL**"]
                             for c in checks]) + [""]
        failed = [c for c in checks if not c.get("passed")]
        if failed:
            lines += ["Failed checks:", ""]
            lines += [f"- `{c.get('id')}` ({c.get('description')}): {_reason(c)}." for c in failed] + [""]
        notes = [c for c in checks if c.get("passed") and c.get("note")]
        if notes:
            lines += ["Notes:", ""] + [f"- `{c.get('id')}`: {c['note']}" for c in notes] + [""]
        tables = [("Measurements", d.get("table"))] + [(f"Measurements ({p})", (d.get(p) or {}).get("table"))
                                                        for p in d.get("parts", {})]
        tables += [(f"Training ({p})", _rows((d.get(p) or {}).get("training"), "agent")) for p in d.get("parts", {})]
        tables += [(f"Counterfactual ({p})", _counterfactual_rows((d.get(p) or {}).get("counterfactual")))
                   for p in d.get("parts", {})]
        for title, table in tables:
            if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
                header = list(dict.fromkeys(k for r in table for k in r))
                lines += [f"{title}:", ""] + _table(header, [[r.get(k) for k in header] for r in table]) + [""]
        figs = _figures_for(area, d, figures, report_dir)
        if figs:
            lines += ["Figures:", ""] + [f"- [{name}]({link})" for name, link in figs] + [""]

    assigned = {name for area, d in docs.items() for name, _ in _figures_for(area, d, figures, report_dir)}
    other = [p for p in figures if p.name not in assigned]
    if other:
        lines += ["## Other figures", ""] + [f"- [{p.name}]({os.path.relpath(p, report_dir)})" for p in other] + [""]

    if run_log:
        lines += ["## Last run", ""]
        lines += _table(["script", "mode", "status", "seconds", "started"],
                        [[f"`{e.get('script')}`", "quick" if e.get("quick") else "full",
                          e.get("status") if e.get("status") == "ok" else f"**{e.get('status')}**: {e.get('error')}",
                          e.get("seconds"), e.get("started")] for e in run_log]) + [""]
        crashed = [e for e in run_log if e.get("status") != "ok"]
        if crashed:
            lines += ["Scripts that crashed left their previous results file (if any) in place; its date above "
                      "shows that it is not from this run.", ""]
    return "\n".join(lines).rstrip() + "\n"


def write_report(results_dir: str | Path = RESULTS_DIR, report_path: str | Path = REPORT_PATH,
                 figures_dir: str | Path | None = FIGURES_DIR, run_log: list[dict] | None = None) -> Path:
    """Render the report from ``results_dir`` and write it to ``report_path``."""
    report_path = Path(report_path)
    text = render_report(results_dir, figures_dir, report_path.parent, run_log)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text)
    return report_path


def _rel(p: Path, base: Path) -> str:
    return os.path.relpath(p, base)


def _short(sha) -> str:
    if not sha:
        return "?"
    sha = str(sha)
    return sha[:12] if len(sha) == 40 and all(c in "0123456789abcdef" for c in sha) else sha


def _anchor(title: str) -> str:
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


# =========================================================================== entry point
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fast versions of every script (CI smoke)")
    parser.add_argument("--only", action="append", metavar="AREA",
                        help="run only this folder / module (repeatable); the report still covers all results")
    parser.add_argument("--report-only", action="store_true", help="do not run scripts; only rebuild REPORT.md")
    args = parser.parse_args(argv)

    log = []
    if not args.report_only:
        names = discover(args.only)
        if args.only and not names:
            parser.error(f"--only {args.only}: no validation script matches; folders are {list(SCRIPT_DIRS)}.")
        print(f"validation scripts: {names or 'none found'}")
        log = run_scripts(names, args.quick)
        (VALIDATION_DIR / RUN_LOG).write_text(json.dumps({"finished": _now(), "scripts": log}, indent=1) + "\n")
    path = write_report(run_log=log or None)
    print(f"\nwrote {path}")
    for e in log:
        print(f"  {e['status']:>8}  {e['seconds']:>7.1f} s  {e['script']}" + (f"  ({e['error']})" if "error" in e else ""))
    return 1 if any(e["status"] != "ok" for e in log) else 0


if __name__ == "__main__":
    sys.exit(main())
