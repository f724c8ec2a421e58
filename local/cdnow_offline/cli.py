"""`cdnow`: run the customer-analytics pipeline on a file and look at its runs, offline on this
machine (``--local``) or on a deployed stack (``--stack NAME``)."""

from __future__ import annotations

import argparse
import gc
import json
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from cdnow.domain.defaults import DEFAULT_CHURN_HORIZON_DAYS
from cdnow.domain.runs import (
    COLUMN_ROLES, DATE_ORDERS, DEFAULT_ENGINE, DEFAULT_MAX_BAD_ROW_SHARE, ENGINES,
)

from .results import REPORT, rows_text

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2

EXIT_STATUS = """exit status:
  0  the command did what it says (for run: the run SUCCEEDED)
  1  the run failed, timed out or was aborted (run); the run named is a failed one (show, report)
  2  usage or input error: bad arguments, no such file, stack or run"""

RESULTS = """results: offline, every run gets a folder DIR/<run_id>/ (default DIR: out) with
run_summary.json, report.html, notification.json, notification-email.txt, charts/ and tables/;
runs, show and report read those folders. With --stack NAME they read the stack: the published
runs table, runs/run_id=<id>/run_summary.json and reports/<id>.html in its curated bucket."""

StackOutputs = Callable[[str], Mapping[str, str]]


def project_root() -> Path:
    """The checkout holding template.yaml (the CLI is installed editable from it)."""
    return Path(__file__).resolve().parents[2]


class UsageError(Exception):
    """Exit status 2: the command cannot be carried out as asked."""


def _wrap(text: str) -> str:
    return textwrap.fill(text, 88)


def _where(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--local", action="store_true",
                       help="offline: the run's own emulator (run), the results folder (runs, show, report)")
    group.add_argument("--stack", metavar="NAME",
                       help="a deployed stack of template.yaml: its outputs are read from CloudFormation "
                       "(credentials and region from the usual AWS settings, or --region); `local`: the stack "
                       "`cdnow local up` runs")
    parser.add_argument("--region", metavar="REGION",
                        help="with --stack: the stack's AWS region (default: the AWS CLI's, AWS_DEFAULT_REGION "
                        "or ~/.aws/config; the stacks of samconfig.toml are in us-east-1)")
    parser.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                        help="results folder, one subfolder per run_id (default: out)")


def _stack_only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, metavar="NAME",
                        help="a deployed stack of template.yaml (a dataset's history lives on a stack), or `local` "
                        "for the stack `cdnow local up` runs")
    parser.add_argument("--region", metavar="REGION", help="the stack's AWS region (default: the AWS CLI's)")
    parser.add_argument("--out", type=Path, default=Path("out"), metavar="DIR",
                        help="results folder, one subfolder per run_id (default: out)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="give up waiting for the execution after this long (default 3600)")


COLUMNS = "recognized column names (case, spaces, underscores and hyphens ignored; --column-mapping for others):\n" + \
    "\n".join(f"  {role:<12} {', '.join(names)}" for role, names in COLUMN_ROLES.items()) + \
    "\n  money is a line amount or a unit price (line amount = quantity x unit price); a column named\n" + \
    "  price alone is the line amount, or the unit price when the file has an order-id column"


def _parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="cdnow", formatter_class=formatter, epilog=f"{RESULTS}\n\n{EXIT_STATUS}",
        description=_wrap("Customer segments, churn risk and lifetime value from a transaction log, "
        "on the serverless stack of template.yaml."),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="run the pipeline on one file", formatter_class=formatter, epilog=f"{COLUMNS}\n\n{EXIT_STATUS}",
        description=_wrap("Put FILE under incoming/ in the raw bucket, follow the execution it starts (each state "
        "with its elapsed time and the counts its output makes known) and write the run to DIR/<run_id>/: "
        "run_summary.json, report.html and charts/; offline also notification.json, notification-email.txt "
        "and tables/<table>.parquet."),
    )
    _where(run, required=True)
    run.add_argument("--input", required=True, type=Path, metavar="FILE", action="append",
                     help="transactions: CDNOW master/sample text, delimited text with a header (comma, tab, "
                     "semicolon or pipe), parquet, or any text format gzip-compressed as .gz; repeat --input to "
                     "deliver several files one after the other (each run waited for; they stop at a failed run)")
    run.add_argument("--dataset", metavar="NAME",
                     help="deliver FILE to the dataset NAME (incoming/NAME/FILE), whose standing options "
                     "incoming/NAME/_dataset.json holds; without it FILE goes directly under incoming/")
    options = run.add_argument_group(
        "run options", "set on the upload as its cdnow-options metadata (the same file with other options is "
        "another run)")
    options.add_argument("--analysis-date", metavar="YYYY-MM-DD",
                         help="the day the analysis looks from (default: the day after the last transaction, "
                         "never later than the day after the upload)")
    options.add_argument("--horizon-days", type=int, metavar="DAYS",
                         help="churn means no purchase within this many days (default: the stack's "
                         f"ChurnHorizonDays, {DEFAULT_CHURN_HORIZON_DAYS})")
    options.add_argument("--column-mapping", metavar="JSON",
                         help="field -> column name for a header the Transform does not recognize, e.g. "
                         '\'{"customer_id": "Kunde", "order_date": "Datum"}\'; fields: ' + ", ".join(COLUMN_ROLES))
    options.add_argument("--max-bad-share", type=float, metavar="SHARE",
                         help="fail the run when more than this share of rows is quarantined (default: the "
                         f"stack's MaxBadRowShare, {DEFAULT_MAX_BAD_ROW_SHARE})")
    options.add_argument("--date-order", choices=DATE_ORDERS,
                         help="how slashed dates (1/2/2010) read when no date in the file has a day above 12")
    options.add_argument("--snapshot", action="store_true", default=None,
                         help="with --dataset: the file is a full snapshot that replaces the dataset's whole history")
    options.add_argument("--currency", metavar="CODE",
                         help="ISO 4217 code the amounts are in, shown in the report and messages (default USD)")
    options.add_argument("--margin", type=float, metavar="SHARE",
                         help="the share of revenue that is profit, applied to lifetime value (default 1: CLV is "
                         "revenue)")
    options.add_argument("--engine", choices=ENGINES,
                         help=f"where Features runs (default {DEFAULT_ENGINE}: the Features Glue job for a run of at "
                         "least the stack's SparkFeaturesMinRows rows, 10,000,000, counting a dataset's history "
                         "with the file, else the Lambda)")
    run.add_argument("--timeout", type=float, metavar="SECONDS",
                     help="give up waiting for the execution after this long (default 600 offline, 3600 on a stack)")
    run.add_argument("--shipped", action="store_true",
                     help="offline: run every function as its artifact ships it, each in a Python 3.12 process "
                     "with only the packages its layer or image installs, its Timeout and MemorySize enforced "
                     "(slower to start; the packages are resolved from PyPI once and cached)")

    replay = commands.add_parser(
        "replay", help="analyse a dataset's history again, with no file delivered", formatter_class=formatter,
        epilog=EXIT_STATUS,
        description=_wrap("Start an execution that computes the dataset's latest analysis again from its history "
        "(after an upgrade, or with other options), as a new run: it waits for the dataset like a delivery, "
        "parses nothing, and is followed and written to DIR/<run_id>/ like `cdnow run`."))
    replay.add_argument("--dataset", required=True, metavar="NAME", help="the dataset (the folder under incoming/)")
    _stack_only(replay)
    erase = commands.add_parser(
        "erase", help="erase customers from a dataset's history (a data-protection request)",
        formatter_class=formatter, epilog=EXIT_STATUS,
        description=_wrap("Delete every row of the customers from the dataset's history and analyse the rest "
        "again (a replay), so the run it publishes, and every later run, has none of their rows. The history "
        "keeps no earlier snapshot that holds them. Not touched: the files delivered (the raw bucket's "
        "incoming/ folder, versioned) and earlier runs' folders and tables; docs/RELIABILITY.md says how to "
        "remove those."))
    erase.add_argument("--dataset", required=True, metavar="NAME", help="the dataset (the folder under incoming/)")
    erase.add_argument("--customer", required=True, action="append", metavar="ID",
                       help="a customer id as the export writes it; repeat for several customers")
    _stack_only(erase)

    local = commands.add_parser(
        "local", help="a long-lived offline stack: local up, local down", formatter_class=formatter,
        epilog=EXIT_STATUS,
        description=_wrap("`cdnow local up` starts the offline stack (moto with the stack of template.yaml "
        "provisioned, local Spark) in a process of its own on a loopback port, and returns: drop files with "
        "the AWS CLI (--endpoint-url, the printed key) or `cdnow run --stack local`, and use every other "
        "--stack command with --stack local, until `cdnow local down` stops it. What it holds lives in "
        "memory and goes with it."))
    local_commands = local.add_subparsers(dest="local_command", required=True, metavar="up|down")
    local_up = local_commands.add_parser("up", help="start the local stack (if none runs) and print how to reach it")
    local_up.add_argument("--port", type=int, default=None, metavar="PORT",
                          help="the loopback port (default 4599)")
    local_commands.add_parser("down", help="stop the local stack")

    runs = commands.add_parser("runs", help="list the runs, newest first", formatter_class=formatter,
                               epilog=f"{RESULTS}\n\n{EXIT_STATUS}",
                               description=_wrap("List the runs: offline the folders of DIR, on a stack its runs table "
                               "(published runs only; failed executions are in Step Functions)."))
    _where(runs, required=False)
    runs.add_argument("--json", action="store_true", help="print JSON instead of a table")

    show = commands.add_parser("show", help="a run's summary", formatter_class=formatter, epilog=EXIT_STATUS,
                               description=_wrap("Print a run's summary as the run-complete e-mail has it."))
    show.add_argument("run_id", metavar="RUN_ID")
    _where(show, required=False)
    show.add_argument("--json", action="store_true", help="print run_summary.json as it is")

    report = commands.add_parser(
        "report", help="a run's HTML report", formatter_class=formatter, epilog=EXIT_STATUS,
        description=_wrap("Print where a run's report is. Offline: DIR/<run_id>/report.html (rendered from the "
        "folder's summary and charts if it has none). On a stack: downloads reports/<run_id>.html to "
        "DIR/<run_id>/report.html and prints a pre-signed link to it as well."))
    report.add_argument("run_id", metavar="RUN_ID")
    _where(report, required=False)
    report.add_argument("--link-hours", type=float, default=24, metavar="HOURS",
                        help="on a stack: how long the printed link works (default 24, at most 168)")
    return parser


# --------------------------------------------------------------------------- commands


def _outputs(args, stack_outputs: StackOutputs) -> Mapping[str, str]:
    from .local_stack import LocalStackError
    from .remote import StackNotFound, check_outputs

    try:
        outputs = stack_outputs(args.stack)
        check_outputs(args.stack, outputs)
    except (StackNotFound, LocalStackError) as exc:
        raise UsageError(str(exc)) from None
    return outputs


def _stack_outputs(name: str) -> Mapping[str, str]:
    """A deployed stack's outputs from CloudFormation; ``local``: the local stack's (cdnow local up)."""
    from .local_stack import LOCAL_STACK, local_outputs
    from .remote import cloudformation_outputs

    return local_outputs(name) if name == LOCAL_STACK else cloudformation_outputs(name)


def _local(args, stack_outputs: StackOutputs) -> int:
    from . import local_stack

    if args.local_command == "down":
        if not local_stack.down():
            print("No local stack runs.")
        return EXIT_OK
    try:
        state = local_stack.up(project_root(), args.port or local_stack.DEFAULT_PORT)
    except local_stack.LocalStackError as exc:
        print(f"cdnow local up: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED
    outputs, key = state["outputs"], state["credentials"]
    endpoint = state["endpoint"]
    print(f"The local stack runs at {endpoint} (pid {state['pid']}), region {state['region']}.")
    for name in ("RawBucketName", "CuratedBucketName", "StateMachineArn", "RunCompleteTopicArn"):
        print(f"  {name:<20} {outputs[name]}")
    print("Drop a file as on AWS (a folder under incoming/ is a dataset):\n"
          f"  export AWS_ACCESS_KEY_ID={key['AccessKeyId']} AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']} "
          f"AWS_DEFAULT_REGION={state['region']}\n"
          f"  aws --endpoint-url {endpoint} s3 cp FILE s3://{outputs['RawBucketName']}/incoming/DATASET/\n"
          "or: cdnow run --stack local --dataset DATASET --input FILE; then cdnow runs --stack local, "
          "cdnow erase --stack local …\nStop it with: cdnow local down")
    return EXIT_OK


def _print_run_end(status: str, summary: dict, seconds: float, run_dir: Path, report: Path | None) -> int:
    if status == "ALREADY_DELIVERED":
        earlier = summary.get("already_delivered") or {}
        print(f"ALREADY DELIVERED in {seconds:.1f} s: {summary.get('input_uri')} holds the content of the dataset "
              f"{summary.get('dataset')}'s delivery {earlier.get('key')} (run {earlier.get('run_id')}); "
              "nothing was computed or published")
        return EXIT_OK
    if status == "SUCCEEDED":
        rows = summary["rows"]
        print(
            f"SUCCEEDED run {summary['run_id']} in {seconds:.1f} s: {rows_text(rows)}; "
            f"{summary['customers']:,} customers as of {summary['analysis_date']}"
        )
        files = sorted(p.name + ("/" if p.is_dir() else "") for p in run_dir.iterdir())
        print(f"Report: {report if report else 'none (see above)'}")
        print(f"Results in {run_dir}/ ({', '.join(files)})")
        return EXIT_OK
    print(
        f"{status} in state {summary.get('failed_state') or '?'}: "
        f"{summary.get('error')}: {summary.get('cause')}",
        file=sys.stderr,
    )
    print(f"Run summary in {run_dir}/run_summary.json", file=sys.stderr)
    return EXIT_RUN_FAILED


def run_options(args) -> dict:
    """The run options the flags set, checked as Ingest will check them (before any upload)."""
    from cdnow.domain.runs import InvalidRunRequest, encode_options_metadata, validate_options

    given = {"analysis_date": args.analysis_date, "churn_horizon_days": args.horizon_days,
             "max_bad_share": args.max_bad_share, "date_order": args.date_order, "currency": args.currency,
             "margin": args.margin, "engine": args.engine,
             "snapshot": args.snapshot}
    if args.column_mapping is not None:
        try:
            given["column_mapping"] = json.loads(args.column_mapping)
        except ValueError as exc:
            raise UsageError(f"--column-mapping is not JSON: {exc}") from None
    try:
        options = validate_options(given, "options")
        if options:
            encode_options_metadata(options)
    except InvalidRunRequest as exc:
        raise UsageError(str(exc).replace("options: ", "", 1)) from None
    return options


def _run(args, stack_outputs: StackOutputs) -> int:
    input_files = [path.resolve() for path in args.input]
    for input_file in input_files:
        if not input_file.is_file():
            raise UsageError(f"input file not found: {input_file}")
    options = run_options(args)
    if args.dataset is not None:
        _check_dataset(args.dataset)
    statuses = []

    def ended(result) -> None:
        statuses.append(_print_run_end(result.status, result.summary, result.seconds, result.run_dir, result.report))

    if args.local:
        from .run import run_local_deliveries

        run_local_deliveries(input_files, args.out, project_root(), timeout_s=args.timeout or 600,
                             shipped=args.shipped, options=options, dataset=args.dataset, on_result=ended)
    else:
        if args.shipped:
            raise UsageError("--shipped is for --local runs: a deployed stack runs what it ships anyway")
        from .remote import run_on_stack

        outputs = _outputs(args, stack_outputs)
        print(f"Stack {args.stack}: raw bucket {outputs['RawBucketName']}, state machine {outputs['StateMachineArn']}")
        for input_file in input_files:
            result = run_on_stack(outputs, input_file, args.out, timeout_s=args.timeout or 3600, poll_s=2.0,
                                  options=options, dataset=args.dataset)
            ended(result)
            if statuses[-1] != EXIT_OK:
                break
    if len(statuses) < len(input_files):
        print(f"{len(input_files) - len(statuses)} file(s) not delivered: a run before them did not succeed",
              file=sys.stderr)
    return EXIT_OK if statuses and all(status == EXIT_OK for status in statuses) and len(statuses) == len(
        input_files) else EXIT_RUN_FAILED


def _check_dataset(name: str) -> None:
    from cdnow.domain.runs import InvalidRunRequest, check_dataset_name

    try:
        check_dataset_name(name)
    except InvalidRunRequest as exc:
        raise UsageError(f"--dataset: {exc}") from None


def _replay(args, stack_outputs: StackOutputs, erase_customers: list[str] | None = None) -> int:
    from .remote import replay_on_stack

    _check_dataset(args.dataset)
    outputs = _outputs(args, stack_outputs)
    print(f"Stack {args.stack}: dataset {args.dataset}, state machine {outputs['StateMachineArn']}")
    result = replay_on_stack(outputs, args.dataset, args.out, erase_customers or [], timeout_s=args.timeout or 3600,
                             poll_s=2.0)
    erased = (result.summary.get("history") or {}).get("erased_rows")
    if erase_customers and result.status == "SUCCEEDED":
        print(f"Erased {erased:,} row(s) of {len(erase_customers)} customer(s) from the dataset {args.dataset}'s "
              "history; the run below is the history without them.")
    return _print_run_end(result.status, result.summary, result.seconds, result.run_dir, result.report)


def _erase(args, stack_outputs: StackOutputs) -> int:
    customers = [customer.strip() for customer in args.customer]
    if not all(customers):
        raise UsageError("--customer: an empty customer id")
    return _replay(args, stack_outputs, customers)


_COLUMNS = (("run_id", "RUN ID"), ("dataset", "DATASET"), ("status", "STATUS"), ("analysis_date", "ANALYSIS DATE"),
            ("rows_read", "ROWS READ"), ("rows_quarantined", "QUARANTINED"), ("customers", "CUSTOMERS"),
            ("published_at", "PUBLISHED AT"), ("warnings", "WARNINGS"))


def _cell(value) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"{int(value):,}"
    return str(value)[:19] if hasattr(value, "isoformat") else str(value)  # a timestamp to the second


def _runs(args, stack_outputs: StackOutputs) -> int:
    if args.stack:
        from .remote import published_runs

        rows = [{**row, "status": "SUCCEEDED"} for row in published_runs(_outputs(args, stack_outputs))]
        where = f"stack {args.stack}"
    else:
        from .results import list_runs

        rows = list_runs(args.out)
        where = f"{args.out}/"
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    if not rows:
        print(f"No runs in {where}.")
        return EXIT_OK
    table = [[title for _, title in _COLUMNS]] + [[_cell(row.get(key)) for key, _ in _COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    numeric = {4, 5, 6}
    for line in table:
        print("  ".join(cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in
                        enumerate(zip(line, widths))).rstrip())
    return EXIT_OK


def _summary(args, stack_outputs: StackOutputs) -> tuple[dict, Path | None]:
    """The run's summary and, offline, its folder."""
    if args.stack:
        from .remote import published_summary

        summary = published_summary(_outputs(args, stack_outputs), args.run_id)
        if summary is None:
            raise UsageError(f"stack {args.stack} has no published run {args.run_id} "
                             f"(cdnow runs --stack {args.stack})")
        return summary, None
    from .results import find_run, read_summary

    run_dir = find_run(args.out, args.run_id)
    if run_dir is None:
        raise UsageError(f"no run {args.run_id} in {args.out}/ (cdnow runs --out {args.out})")
    return read_summary(run_dir), run_dir


def _show(args, stack_outputs: StackOutputs) -> int:
    from cdnow.presentation.messages import email_text

    summary, run_dir = _summary(args, stack_outputs)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif summary.get("status") == "SUCCEEDED":
        report = {"url": str(run_dir / REPORT)} if run_dir and (run_dir / REPORT).is_file() else None
        text = email_text(summary, report)
        if report is None:
            text += f"Report: cdnow report {args.run_id}" + (f" --stack {args.stack}" if args.stack else "") + "\n"
        print(text, end="")
    else:
        print(f"Run {summary.get('run_id') or args.run_id} {summary.get('status')} in state "
              f"{summary.get('failed_state') or '?'}: {summary.get('error')}: {summary.get('cause')}")
        if summary.get("input_uri"):
            print(f"Input: {summary['input_uri']}")
    return EXIT_OK if summary.get("status") == "SUCCEEDED" else EXIT_RUN_FAILED


def _report(args, stack_outputs: StackOutputs) -> int:
    summary, run_dir = _summary(args, stack_outputs)
    if summary.get("status") != "SUCCEEDED":
        print(f"Run {args.run_id} {summary.get('status')}: a failed run has no report "
              f"(cdnow show {args.run_id})", file=sys.stderr)
        return EXIT_RUN_FAILED
    if args.stack:
        from .remote import download_report, report_link

        if not 0 < args.link_hours <= 168:
            raise UsageError("--link-hours must be more than 0 and at most 168 (7 days, the SigV4 limit)")
        outputs = _outputs(args, stack_outputs)
        path = download_report(outputs, args.run_id, args.out / args.run_id)
        if path is None:
            print(f"Run {args.run_id} has no report in s3://{outputs['CuratedBucketName']}/reports/", file=sys.stderr)
            return EXIT_RUN_FAILED
        print(f"Report: {path}")
        print(f"Link ({args.link_hours:g} h): {report_link(outputs, args.run_id, int(args.link_hours * 3600))}")
        return EXIT_OK
    from .results import local_report

    print(f"Report: {local_report(run_dir)}")
    return EXIT_OK


_COMMANDS = {"run": _run, "replay": _replay, "erase": _erase, "local": _local, "runs": _runs, "show": _show,
             "report": _report}


def main(argv: list[str] | None = None, stack_outputs: StackOutputs | None = None) -> int:
    """The CLI. ``stack_outputs`` maps a stack name to its outputs: CloudFormation by default;
    tests pass the outputs of a stack the offline provisioner made, so that every --stack code
    path runs against the emulator exactly as against AWS."""
    args = _parser().parse_args(argv)
    if getattr(args, "region", None):
        if not args.stack:
            print(f"cdnow {args.command}: --region is for --stack NAME", file=sys.stderr)
            return EXIT_USAGE
        import boto3

        # Every boto3 client of the CLI is made from the default session.
        boto3.setup_default_session(region_name=args.region)
    if stack_outputs is None:
        stack_outputs = _stack_outputs
    try:
        return _COMMANDS[args.command](args, stack_outputs)
    except UsageError as exc:
        print(f"cdnow {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TimeoutError as exc:
        print(f"cdnow {args.command}: {exc}", file=sys.stderr)
        return EXIT_RUN_FAILED


def console_main() -> int:
    """The `cdnow` command: main, then the process ends without a last full collection of the
    objects an offline run leaves (about 750,000: 1.5-2 s of a master run's wall time for memory
    the operating system takes back anyway)."""
    status = main()
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(console_main())
