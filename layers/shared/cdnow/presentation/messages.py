"""The run-complete message: a subject and an e-mail body a person reads, and the JSON summary
for the machines, in one SNS message.

SNS delivers one message per protocol when it is published with ``MessageStructure: json``:
``run_complete_message`` returns ``{"default": JSON, "sqs": JSON, "email": text}``, so e-mail
subscribers read plain text while SQS, HTTP and Lambda subscribers keep parsing the summary
(``default`` serves every protocol without its own key). Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from . import formatting as fmt

# SNS: "Subjects must be ... less than 100 characters long"; ASCII keeps every mail client happy.
SUBJECT_MAX = 99
_BASELINE_LABELS = {"recency": "recency rule", "bgnbd_no_purchase": "BG/NBD", "bgnbd_p_alive": "BG/NBD P(alive)"}
_MODELS = {"logistic_regression": "logistic regression", "hist_gradient_boosting": "gradient boosting"}


def _ascii(text: str) -> str:
    return " ".join(text.encode("ascii", "replace").decode().split())


def subject(summary: Mapping[str, Any]) -> str:
    """'CDNOW run cdnow-master-35f83c2e516f SUCCEEDED: 23,570 customers, 7 segments', at most
    ``SUBJECT_MAX`` ASCII characters (a long run id is shortened in the middle)."""
    run_id = str(summary.get("run_id") or "none")
    status = str(summary.get("status") or "SUCCEEDED")
    tail = f" {status}"
    if summary.get("customers") is not None:
        tail += f": {fmt.count(summary['customers'])} customers"
        if summary.get("segments"):
            tail += f", {len(summary['segments'])} segments"
        if summary.get("warnings"):
            tail += f", {len(summary['warnings'])} warning" + ("s" if len(summary["warnings"]) > 1 else "")
    room = SUBJECT_MAX - len("CDNOW run ") - len(tail)
    if len(run_id) > room:
        keep = max(room - 3, 2)
        run_id = f"{run_id[:keep - keep // 2]}...{run_id[-(keep // 2):]}"
    return _ascii(f"CDNOW run {run_id}{tail}")[:SUBJECT_MAX]


def _churn_lines(churn: Mapping[str, Any]) -> list[str]:
    baselines = [
        f"{label} {fmt.mean_sd(churn, f'{key}_baseline_cv_roc_auc', 3)}"
        for key, label in _BASELINE_LABELS.items() if f"{key}_baseline_roc_auc" in churn and key != "bgnbd_p_alive"
    ]
    model = _MODELS.get(churn.get("chosen_model"), churn.get("chosen_model") or "model")
    lines = [
        f"Churn within {fmt.count(churn.get('horizon_days'))} days ({model}, "
        f"{fmt.count(churn.get('cv_folds'))}-fold cross-validated, mean \u00b1 sd):",
        f"  ROC AUC {fmt.mean_sd(churn, 'cv_roc_auc', 3)}"
        + (f" (baselines: {', '.join(baselines)})" if baselines else "")
        + f", PR AUC {fmt.mean_sd(churn, 'cv_pr_auc', 3)}, "
        f"lift in the top 10% {fmt.mean_sd(churn, 'cv_lift_top_decile', 2)}",
    ]
    if churn.get("backtest_skipped"):
        lines.append(f"  Back-test skipped: {churn['backtest_skipped']}")
    elif churn.get("backtest_roc_auc") is not None:
        lines.append(
            f"  Back-test (trained as of {churn.get('backtest_train_cutoff')}, scored as of "
            f"{churn.get('backtest_score_date')}): ROC AUC {fmt.number(churn.get('backtest_roc_auc'), 3)}, churn rate "
            f"predicted {fmt.percent(churn.get('backtest_predicted_churn_rate'))}, actual "
            f"{fmt.percent(churn.get('backtest_actual_churn_rate'))}")
    lines.append(
        f"  High risk now: {fmt.percent(churn.get('share_high_risk'))} of customers "
        f"(medium {fmt.percent(churn.get('share_medium_risk'))}, low {fmt.percent(churn.get('share_low_risk'))})")
    return lines


def email_text(summary: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> str:
    """The plain-text body: counts, segments, churn figures, total CLV and the report link.

    ``report`` is what the Report step made: ``url`` (pre-signed), ``expires_at``, ``uri``.
    """
    rows = summary.get("rows") or {}
    customers = summary.get("customers")
    currency = fmt.currency_of(summary)
    lines = [
        f"CDNOW customer analytics: run {summary.get('run_id')} {summary.get('status', 'SUCCEEDED')}",
        f"Input: {summary.get('input_uri', fmt.DASH)}",
        f"Analysis date: {summary.get('analysis_date', fmt.DASH)}",
        "",
        f"Rows: {fmt.count(rows.get('read'))} read, {fmt.count(rows.get('accepted'))} accepted, "
        f"{fmt.count(rows.get('quarantined'))} quarantined "
        f"({fmt.percent(fmt.share(rows.get('quarantined'), rows.get('read')), 2)})",
    ]
    by_reason = rows.get("by_reason") or {}
    if by_reason:
        reasons = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))
        lines.append("  quarantined by reason: " + ", ".join(f"{reason} {fmt.count(n)}" for reason, n in reasons))
    for reason, n in sorted((rows.get("excluded") or {}).items()):
        amount = (rows.get("excluded_amount") or {}).get(reason)
        lines.append(f"  excluded ({reason}): {fmt.count(n)} lines, {fmt.money(amount, currency, 2)}")
    if rows.get("return_lines"):
        lines.append(f"  returns and cancellations: {fmt.count(rows['return_lines'])} lines, "
                     f"{fmt.money(rows.get('returned_amount'), currency, 2)} netted against spend")
    lines.append(f"Customers: {fmt.count(customers)}")
    if summary.get("customers_without_purchase"):
        lines.append(f"  left out: {fmt.count(summary['customers_without_purchase'])} customers with returns "
                     "but no purchase")

    warnings = summary.get("warnings") or []
    if warnings:
        lines += ["", "Warnings (the run succeeded without these models; their tables have no partition for it):"]
        lines += [f"  {w.get('message') or w.get('model')}" for w in warnings]

    segments = summary.get("segments") or {}
    if segments:
        width = max(len(name) for name in segments)
        lines += ["", f"Segments ({len(segments)}):"]
        for name, seg in sorted(segments.items(), key=lambda item: item[1].get("segment_rank", 0)):
            lines.append(
                f"  {name:<{width}}  {fmt.count(seg.get('customers')):>7} customers "
                f"({fmt.percent(fmt.share(seg.get('customers'), customers))}), "
                f"{fmt.percent(seg.get('revenue_share'))} of revenue")
        migration = (summary.get("segmentation") or {}).get("migration")
        if migration:
            lines.append(f"  {fmt.count(migration.get('customers_moved'))} customers changed segment since run "
                         f"{migration.get('previous_run_id')}")

    churn = summary.get("churn") or {}
    if churn:
        lines += [""] + _churn_lines(churn)

    value = summary.get("value") or {}
    if value:
        holdout = summary.get("value_holdout") or {}
        margin = value.get("margin")
        lines += [
            "",
            f"Value ({value.get('purchase_model_title') or 'BG/NBD'} and Gamma-Gamma; "
            + ("revenue, no margin applied" if margin in (None, 1, 1.0) else f"{fmt.percent(margin, 0)} margin")
            + "):",
            f"  Expected value of the next 12 months: {fmt.money(value.get('total_clv_12m'), currency)} "
            f"({fmt.money(value.get('mean_clv_12m'), currency, 2)} per customer); mean P(alive) "
            f"{fmt.percent(value.get('mean_p_alive'))}",
        ]
        if holdout:
            lines.append(
                f"  Holdout check: {fmt.count(holdout.get('predicted_holdout_purchases'))} purchase days predicted, "
                f"{fmt.count(holdout.get('actual_holdout_purchases'))} actual "
                f"({fmt.percent(holdout.get('relative_error'))}); mean error per customer "
                f"{fmt.number(holdout.get('mean_absolute_error'), 3)}")
        comparison = summary.get("value_models") or {}
        if comparison.get("checks"):
            lines.append("  Chosen by the smallest mean error per customer among: " + ", ".join(
                f"{check.get('model_title')} {fmt.number(check.get('mean_absolute_error'), 3)}"
                for check in comparison["checks"]))

    lines.append("")
    if report and report.get("url"):
        lines.append(f"Report: {report['url']}")
        if report.get("expires_at"):
            lines.append(f"  (the link works until {report['expires_at']} at the latest; the report itself stays "
                         f"at {report.get('uri')})")
    elif report and report.get("error"):
        lines.append(f"No report: {report['error']}")
    tables = summary.get("tables") or {}
    if tables:
        database = next(iter(tables.values())).get("database", "cdnow_analytics")
        lines.append(f"Tables: {database}.{{{', '.join(tables)}}}, partition run_id = '{summary.get('run_id')}'")
    return "\n".join(_ascii_line(line) for line in lines) + "\n"


def _ascii_line(line: str) -> str:
    # The text goes to e-mail as is: keep the typographic minus and dash readable everywhere.
    return line.replace("\u2212", "-").replace("\u2013", "-")


def run_complete_message(summary: Mapping[str, Any], report: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The SNS message for ``MessageStructure: json``: the summary (with the report's location
    and link under ``report``) as JSON for machines, the e-mail text for people."""
    document = dict(summary)
    if report:
        document["report"] = dict(report)
    as_json = json.dumps(document, default=str)
    return {"default": as_json, "sqs": as_json, "email": email_text(summary, report)}


def readable_cause(cause: str | None) -> str | None:
    """An error's cause as a person reads it: a Lambda error's cause is its JSON error payload
    (type, message and the stack trace): keep the type and message; a failed Glue job run's is
    the job run: keep its error message, or say how it ended; any other cause is kept as it is."""
    try:
        payload = json.loads(cause or "")
    except ValueError:
        return cause
    if isinstance(payload, dict) and "errorMessage" in payload:
        return f"{payload.get('errorType')}: {payload['errorMessage']}"
    if isinstance(payload, dict) and ("JobRunState" in payload or "ErrorMessage" in payload):  # a Glue job run
        if payload.get("ErrorMessage"):
            return f"Glue job run {payload.get('Id')}: {payload['ErrorMessage']}"
        if payload.get("JobRunState") == "TIMEOUT":
            # CloudFormation names a job after its logical id (TransformJob-…, FeaturesJob-…).
            job = "FeaturesJob" if "FeaturesJob" in str(payload.get("JobName") or "") else "TransformJob"
            return (f"Glue job run {payload.get('Id')} timed out: it ran past the job's Timeout of "
                    f"{payload.get('Timeout')} minutes (the template's {job} Timeout)")
        return f"Glue job run {payload.get('Id')} ended {payload.get('JobRunState')}"
    return cause


def failure_message(failed_state: str, error: Mapping[str, Any] | None, run: Mapping[str, Any] | None,
                    execution: str, rows: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The run-failed notice: ``subject`` and the SNS ``message`` (JSON for machines, text for
    e-mail), with the error's type and message but never its stack trace or a serialized payload
    (the execution's history keeps the raw cause), and the row counts known when it failed."""
    error = error or {}
    run = dict(run or {})
    run_id = str(run.get("run_id") or "none")
    cause = readable_cause(error.get("Cause"))
    summary = {"status": "FAILED", "failed_state": failed_state, "error": error.get("Error"), "cause": cause,
               "run": run, "execution": execution, "rows": dict(rows) if rows else None}
    counted = []
    if rows and "read" in rows:
        counted = ["", f"The file: {rows['read']:,} rows read, {rows.get('accepted', 0):,} accepted, "
                       f"{sum((rows.get('excluded') or {}).values()):,} excluded, "
                       f"{rows.get('quarantined', 0):,} quarantined."]
    as_json = json.dumps(summary, default=str)
    email = "\n".join(_ascii_line(line) for line in [
        f"CDNOW customer analytics: run {run_id} FAILED in the {failed_state} step.",
        "",
        f"Error: {error.get('Error')}",
        f"Cause: {cause}",
        *counted,
        "",
        "Nothing was published: the tables in the catalog are those of the previous run. "
        f"Execution: {execution}",
    ]) + "\n"
    return {"subject": _ascii(f"CDNOW run {run_id} FAILED in {failed_state}")[:SUBJECT_MAX],
            "message": {"default": as_json, "sqs": as_json, "email": email}}
