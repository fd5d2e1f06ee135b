"""The validation record: one machine-readable results file per area.

Every validation script ends by calling :func:`write_results`, which writes
``validation/results/<area>.json`` in the form fixed by DESIGN.md ("The validation record")::

    {"generated": "2026-11-23T12:00:00Z", "commit": "<git sha>", "machine": "2 CPU cores, no GPU",
     "checks": [{"id": "docetaxel.nadir_day", "description": "...", "source": "Friberg 2002 ...",
                 "value": 7.4, "unit": "d", "target": "6-9", "passed": true}],
     ...optional area-specific keys (e.g. "details", "table")...}

Checks are written as given: a failing check stays in the file with ``"passed": false`` (the
record is honest, not curated), and a check whose value could not be measured is written with
``"value": null`` and ``"passed": false``.  Non-finite numbers become ``null`` (JSON has no NaN).

Besides the schema keys, the file carries ``"dirty": true`` when the working tree had
uncommitted changes at the time of the run (so the sha alone does not reproduce it).
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["Check", "write_results", "read_results", "save_figure", "git_commit", "machine_description", "RESULTS_DIR",
           "FIGURES_DIR", "SCHEMA_KEYS", "CHECK_KEYS"]

VALIDATION_DIR = Path(__file__).resolve().parent
RESULTS_DIR = VALIDATION_DIR / "results"
FIGURES_DIR = VALIDATION_DIR / "figures"
SCHEMA_KEYS = ("generated", "commit", "machine", "checks")
CHECK_KEYS = ("id", "description", "source", "value", "unit", "target", "passed")


@dataclass(frozen=True)
class Check:
    """One validation check: what was measured (``value`` in ``unit``), against which ``target``
    (a human-readable string such as ">= 100" or "6-9"), where the reference comes from
    (``source``: a citation, or "measured in this run"), and whether it ``passed``.

    ``note`` is optional free text (e.g. why a check failed, or how the value was obtained); it
    is written to the JSON only when non-empty and shown in REPORT.md.
    """

    id: str
    description: str
    source: str
    value: object
    unit: str
    target: str
    passed: bool
    note: str = ""

    def __post_init__(self):
        for name in ("id", "description", "source", "unit", "target"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Check {self.id!r}: {name} must be a string, got {type(getattr(self, name)).__name__}.")
        if not self.id:
            raise ValueError("Check: id must be a non-empty string.")
        object.__setattr__(self, "passed", bool(self.passed))

    # ------------------------------------------------------------ constructors with a verdict
    @classmethod
    def at_least(cls, id, description, source, value, unit, threshold, note="", fmt="{:g}"):
        """A check that passes when ``value >= threshold`` (a missing/NaN value fails)."""
        ok = _finite(value) and value >= threshold
        return cls(id, description, source, value, unit, ">= " + fmt.format(threshold), ok, note)

    @classmethod
    def at_most(cls, id, description, source, value, unit, threshold, note="", fmt="{:g}"):
        """A check that passes when ``value <= threshold`` (a missing/NaN value fails)."""
        ok = _finite(value) and value <= threshold
        return cls(id, description, source, value, unit, "<= " + fmt.format(threshold), ok, note)

    @classmethod
    def within(cls, id, description, source, value, unit, lo, hi, note="", fmt="{:g}"):
        """A check that passes when ``lo <= value <= hi``."""
        ok = _finite(value) and lo <= value <= hi
        return cls(id, description, source, value, unit, f"{fmt.format(lo)}-{fmt.format(hi)}", ok, note)

    def to_json(self) -> dict:
        d = asdict(self)
        note = d.pop("note")
        d = {k: d[k] for k in CHECK_KEYS}
        d["value"] = _jsonable(d["value"])
        if note:
            d["note"] = note
        return d


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _jsonable(v):
    """Plain JSON values: numpy scalars/arrays to Python, non-finite floats to None."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "tolist"):           # numpy / jax arrays and scalars
        return _jsonable(v.tolist())
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return f if math.isfinite(f) else None


# ---------------------------------------------------------------------------- provenance
def git_commit(cwd: Path | None = None) -> tuple[str, bool]:
    """(sha of HEAD or "uncommitted", whether the working tree has uncommitted changes)."""
    cwd = cwd or VALIDATION_DIR
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "uncommitted", True
    if not sha:
        return "uncommitted", True
    return sha, bool(status)


def _has_gpu() -> bool:
    jax = sys.modules.get("jax")
    if jax is not None:          # only ask JAX when the script already uses it (importing it is slow)
        try:
            return any(d.platform == "gpu" for d in jax.devices())
        except Exception:  # noqa: BLE001 - no backend information: fall back to the driver tool
            pass
    return shutil.which("nvidia-smi") is not None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def machine_description() -> str:
    """E.g. "2 CPU cores, no GPU (Linux x86_64, Intel Xeon ...)"."""
    cores = os.cpu_count() or 0
    cpu = _cpu_model()
    extra = ", ".join(x for x in (f"{platform.system()} {platform.machine()}", cpu) if x)
    return f"{cores} CPU core{'s' if cores != 1 else ''}, {'GPU' if _has_gpu() else 'no GPU'} ({extra})"


# ---------------------------------------------------------------------------- write / read
def write_results(area: str, checks, extra: dict | None = None, *, results_dir: str | Path | None = None,
                  part: str | None = None) -> Path:
    """Write ``<results_dir>/<area>.json`` (default ``validation/results/``) and return its path.

    ``checks``: an iterable of :class:`Check` (or dicts with the check keys).  ``extra``: optional
    area-specific keys added at the top level (they may not replace the schema keys).  The file is
    written atomically (temporary file, then rename).

    ``part``: when several scripts share one area (e.g. ``psma``: published dosimetry and
    calibration recovery), each writes its part: its checks replace those it wrote before, the
    other parts' checks stay, ``extra`` goes under the key ``part``, and ``"parts"`` records
    which check ids belong to which part.
    """
    if not isinstance(area, str) or not area or any(c in area for c in "/\\") or area.startswith("_"):
        raise ValueError(f"write_results: area must be a plain name like 'performance', got {area!r}.")
    rows = []
    seen = set()
    for c in checks:
        if isinstance(c, dict):
            missing = [k for k in CHECK_KEYS if k not in c]
            if missing:
                raise ValueError(f"write_results({area!r}): check {c.get('id')!r} lacks {missing}.")
            c = Check(**{k: c[k] for k in CHECK_KEYS}, note=c.get("note", ""))
        if not isinstance(c, Check):
            raise TypeError(f"write_results({area!r}): expected Check objects, got {type(c).__name__}.")
        if c.id in seen:
            raise ValueError(f"write_results({area!r}): duplicate check id {c.id!r}.")
        seen.add(c.id)
        rows.append(c.to_json())
    extra = dict(extra or {})
    clash = [k for k in extra if k in SCHEMA_KEYS or k == "dirty"]
    if clash:
        raise ValueError(f"write_results({area!r}): extra keys {clash} would replace schema keys.")
    sha, dirty = git_commit()
    doc = {"generated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": sha,
           "machine": machine_description(), "checks": rows}
    if dirty:
        doc["dirty"] = True
    if part is None:
        doc.update({k: _jsonable(v) for k, v in extra.items()})
    out_dir = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{area}.json"
    if part is not None:
        _merge_part(doc, path, part, extra)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def _merge_part(doc, path, part, extra):
    old = json.loads(path.read_text()) if path.exists() else {}
    parts = {k: v for k, v in old.get("parts", {}).items() if k != part}
    kept_ids = {i for ids in parts.values() for i in ids}
    mine = [r["id"] for r in doc["checks"]]
    if kept_ids & set(mine):
        raise ValueError(f"write_results(part={part!r}): check ids {sorted(kept_ids & set(mine))} belong to another part.")
    doc["checks"] = [r for r in old.get("checks", []) if r["id"] in kept_ids] + doc["checks"]
    for k in parts:
        if k in old:
            doc[k] = old[k]
    doc[part] = _jsonable(extra)
    doc["parts"] = {**parts, part: mine}


def save_figure(fig, name: str) -> Path:
    """Lay out ``fig``, write it to ``validation/figures/<name>`` and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    FIGURES_DIR.mkdir(exist_ok=True)
    path = FIGURES_DIR / name
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def read_results(results_dir: str | Path | None = None) -> dict[str, dict]:
    """All ``<area>.json`` files of a results folder (files starting with "_" are skipped),
    as area -> document, sorted by area."""
    d = Path(results_dir) if results_dir is not None else RESULTS_DIR
    out = {}
    for p in sorted(d.glob("*.json")):
        if p.name.startswith("_"):
            continue
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            out[p.stem] = {"error": f"unreadable results file: {e}", "checks": []}
    return out
