"""Readable names for customer features and churn model inputs, shared by the charts and the
report (standard library only, so the pure report module can use it)."""

from __future__ import annotations

_FEATURE_LABELS = {
    "recency_days": "Days since last purchase",
    "purchase_days": "Purchase days",
    "orders": "Orders",
    "monetary_total": "Total spend",
    "monetary_avg_per_purchase": "Spend per purchase day",
    "quantity_total": "Units bought",
    "tenure_days": "Days since first purchase",
    "avg_days_between_purchases": "Days between purchases",
}


def feature_label(name: str) -> str:
    """A chart label for a customer feature or a churn model input (log1p_<feature>)."""
    base = name.removeprefix("log1p_")
    return _FEATURE_LABELS.get(base, base.replace("_", " ").capitalize())
