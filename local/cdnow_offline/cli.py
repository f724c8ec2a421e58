"""`cdnow`: run the customer-analytics pipeline on a file, offline on this machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2


def project_root() -> Path:
    """The checkout holding template.yaml (the CLI is installed editable from it)."""
    return Path(__file__).resolve().parents[2]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdnow",
        description="Customer segments, churn risk and lifetime value from a transaction log, "
        "on the serverless stack of template.yaml.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="run the pipeline on one file",
        description="Put FILE under incoming/ in the raw bucket, follow the state machine and export "
        "run_summary.json, notification.json and tables/<table>.parquet to DIR.",
    )
    run.add_argument("--local", action="store_true", required=True,
                     help="run on the offline stack (moto + local Spark) started for this run")
    run.add_argument("--input", required=True, type=Path, metavar="FILE",
                     help="transactions: CDNOW master/sample text or CSV with a header")
    run.add_argument("--out", required=True, type=Path, metavar="DIR", help="where results are written")
    run.add_argument("--timeout", type=float, default=600, metavar="SECONDS",
                     help="give up waiting for the execution after this long (default 600)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .run import run_local

    try:
        result = run_local(args.input.resolve(), args.out, project_root(), timeout_s=args.timeout)
    except FileNotFoundError as exc:
        print(f"cdnow: {exc}", file=sys.stderr)
        return EXIT_USAGE
    summary = result.summary
    if result.status == "SUCCEEDED":
        rows = summary["rows"]
        print(
            f"SUCCEEDED run {summary['run_id']} in {result.seconds:.1f} s: {rows['read']:,} rows read, "
            f"{rows['accepted']:,} accepted, {rows['quarantined']:,} quarantined; "
            f"{summary['customers']:,} customers as of {summary['analysis_date']}"
        )
        print(f"Results in {args.out}/ (run_summary.json, notification.json, tables/)")
        return EXIT_OK
    print(
        f"{result.status} in state {summary.get('failed_state') or '?'}: "
        f"{summary.get('error')}: {summary.get('cause')}",
        file=sys.stderr,
    )
    return EXIT_RUN_FAILED


if __name__ == "__main__":
    sys.exit(main())
