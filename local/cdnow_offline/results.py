"""The offline results folder: one subfolder per run, ``<out>/<run_id>/``, as `cdnow run --local`
writes it (run_summary.json, report.html, notification.json, notification-email.txt, charts/,
tables/).

The emulator is gone once a run ends, so `cdnow runs`, `show` and `report` without ``--stack``
read these folders instead of the stack's runs table and curated bucket.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

# The files of a run's folder.
SUMMARY = "run_summary.json"
REPORT = "report.html"
NOTIFICATION = "notification.json"
EMAIL = "notification-email.txt"


def rows_text(rows: dict) -> str:
    """A run's row counts in a few words: read, accepted (returns among them), excluded, quarantined."""
    accepted = f"{rows['accepted']:,} accepted"
    if rows.get("return_lines"):
        accepted += f" ({rows['return_lines']:,} returns)"
    parts = [f"{rows['read']:,} rows read", accepted]
    for reason, n in sorted((rows.get("excluded") or {}).items()):
        parts.append(f"{n:,} excluded ({reason})")
    parts.append(f"{rows['quarantined']:,} quarantined")
    return ", ".join(parts)


def run_dirs(out_root: Path) -> list[Path]:
    if not out_root.is_dir():
        return []
    return sorted(p for p in out_root.iterdir() if (p / SUMMARY).is_file())


def read_summary(run_dir: Path) -> dict:
    return json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))


def find_run(out_root: Path, run_id: str) -> Path | None:
    """The folder of ``run_id`` (its name, or the run_id its summary names)."""
    direct = out_root / run_id
    if (direct / SUMMARY).is_file():
        return direct
    return next((d for d in run_dirs(out_root) if read_summary(d).get("run_id") == run_id), None)


def _published_at(run_dir: Path) -> str:
    """When the run was published (its row of the runs table), else when its summary was written."""
    runs = run_dir / "tables" / "runs.parquet"
    if runs.is_file():
        import pandas as pd

        stamp = pd.read_parquet(runs, columns=["published_at"])["published_at"].max()
        return pd.Timestamp(stamp).strftime("%Y-%m-%d %H:%M:%S")
    mtime = (run_dir / SUMMARY).stat().st_mtime
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def list_runs(out_root: Path) -> list[dict]:
    """One row per run folder, newest first, in the columns of the stack's runs table."""
    rows = []
    for run_dir in run_dirs(out_root):
        summary = read_summary(run_dir)
        counts = summary.get("rows") or {}
        rows.append({
            "run_id": summary.get("run_id") or run_dir.name,
            "dataset": summary.get("dataset") or (summary.get("run") or {}).get("dataset"),
            "status": summary.get("status"),
            "analysis_date": summary.get("analysis_date"),
            "rows_read": counts.get("read"),
            "rows_quarantined": counts.get("quarantined"),
            "customers": summary.get("customers"),
            "warnings": "; ".join(w.get("message") or w.get("model") for w in summary.get("warnings") or []),
            "published_at": _published_at(run_dir),
            "folder": str(run_dir),
        })
    return sorted(rows, key=lambda row: (row["published_at"], row["run_id"]), reverse=True)


def local_report(run_dir: Path) -> Path:
    """The run's report.html; rendered from its summary, charts and segment profiles when the
    folder has none (made before the report existed, or after a report failure)."""
    path = run_dir / REPORT
    if path.is_file():
        return path
    from cdnow.presentation.report import chart_name, render_report

    summary = read_summary(run_dir)
    charts = {chart_name(uri): (run_dir / "charts" / f"{chart_name(uri)}.svg").read_text(encoding="utf-8")
              for uri in summary.get("charts", [])}
    profiles_file = run_dir / "tables" / "segment_profiles.parquet"
    profiles = None
    if profiles_file.is_file():
        import pandas as pd

        profiles = pd.read_parquet(profiles_file).to_dict("records")
    path.write_text(render_report(summary, charts, profiles=profiles), encoding="utf-8")
    return path
