"""The charts of a run's report: which figures each model step draws, from its results.

``charts`` knows how to draw; this module knows what to show. Each function takes a model
step's result and returns ``{chart name: SVG text}``; the pipeline writes them under the run's
``charts/`` folder (``RunLayout.chart``), where the report picks them up.
"""

from __future__ import annotations

import math

import numpy as np

from . import charts
from . import formatting as fmt
from .labels import feature_label


def segment_figures(result) -> dict[str, str]:
    """Segment sizes and revenue share, a profile plot per segment, the RFM heat map, and the
    k-selection criteria (``segments.SegmentationResult``)."""
    profiles = result.profiles
    names = [str(n) for n in profiles["segment_name"]]
    figures = {
        "segment_sizes": charts.bar_chart(
            names,
            {"Share of customers": profiles["customer_share"].tolist(),
             "Share of revenue": profiles["revenue_share"].tolist()},
            title="Segments: share of customers and of revenue", y_label="Share",
            value_format="{:.0%}"),
    }
    index = result.profile_index
    features = [c for c in index.columns if c not in ("segment_name", "segment_rank")]
    values = index[features].to_numpy(dtype=np.float64) * 100.0
    usable = ~np.isnan(values).any(axis=0)
    features = [f for f, keep in zip(features, usable) if keep]
    figures["segment_profiles"] = charts.profile_chart(
        [str(n) for n in index["segment_name"]], [feature_label(f) for f in features],
        values[:, usable].tolist(), title="Segment profiles: mean of each feature against all customers",
        height=max(400, 220 * math.ceil(len(index) / 3)))

    grid = result.rfm_grid
    recency_bins = list(dict.fromkeys(grid["recency_bin"]))
    day_bins = list(dict.fromkeys(grid["purchase_days_bin"]))
    counts = (grid.set_index(["recency_bin", "purchase_days_bin"])["customers"]
              .reindex([(r, d) for r in recency_bins for d in day_bins]).to_numpy())
    figures["rfm_heatmap"] = charts.heatmap(
        recency_bins, day_bins, counts.reshape(len(recency_bins), len(day_bins)).tolist(),
        title="Customers by recency and purchase days", x_label="Purchase days",
        y_label="Days since last purchase", value_format="{:,.0f}")

    k = [row["k"] for row in result.k_selection]
    figures["segment_k_selection"] = charts.line_chart(
        {"Silhouette (higher: better separated)": (k, [row["silhouette"] for row in result.k_selection]),
         "Stability across seeds (adjusted Rand)": (k, [row["stability"] for row in result.k_selection])},
        title=f"Choosing the number of segments (chosen: k = {result.n_clusters})",
        x_label="Number of segments k", y_label="Score", y_range=(0, 1), markers=True)
    return figures


def _model_label(metrics: dict) -> str:
    return {"logistic_regression": "Logistic regression",
            "hist_gradient_boosting": "Gradient boosting"}.get(metrics.get("chosen_model"), "Model")


def _compared(metrics: dict, curves: dict) -> list[tuple[str, str]]:
    """(metric/curve prefix, legend label): the chosen model, then each baseline."""
    baselines = sorted({name.split("_baseline_")[0] for name in curves if "_baseline_" in name})
    labels = {"recency": "Recency rule", "bgnbd_p_alive": "BG/NBD 1 - P(alive)",
              "bgnbd_no_purchase": "BG/NBD P(no purchase)"}
    return [("", _model_label(metrics))] + [
        (f"{b}_baseline_", labels.get(b, b.replace("_", " "))) for b in baselines]


def churn_figures(result) -> dict[str, str]:
    """ROC, precision-recall, calibration and lift of the chosen model against the baselines
    on the validation customers (``churn.ChurnResult``)."""
    metrics, curves = result.metrics, result.curves
    compared = _compared(metrics, curves)
    horizon = metrics.get("horizon_days")

    def series(kind: str, auc: str | None = None) -> dict:
        """One line per compared score; ``auc`` names the metric shown in the legend."""
        out = {}
        for prefix, label in compared:
            curve = curves.get(f"{prefix}{kind}")
            if curve:
                if auc:
                    label = f"{label} ({auc.upper().replace('_', '-')} {metrics[prefix + auc]:.3f})"
                out[label] = (curve["x"], curve["y"])
        return out

    figures = {
        "churn_roc": charts.line_chart(
            series("roc", "roc_auc"), title=f"Churn within {horizon} days: ROC on held-out customers",
            x_label="False positive rate", y_label="True positive rate", x_range=(0, 1),
            y_range=(0, 1), diagonal="Chance", percent_axes=True),
        "churn_precision_recall": charts.line_chart(
            series("precision_recall", "pr_auc"), title="Precision and recall on held-out customers",
            x_label="Recall (share of churners found)", y_label="Precision", x_range=(0, 1),
            y_range=(0, 1), percent_axes=True),
        "churn_lift": charts.line_chart(
            series("lift"), title="Lift by share of customers targeted (highest risk first)",
            x_label="Share of customers targeted", y_label="Lift over the base rate",
            x_range=(0, 1), percent_axes="x", markers=True),
    }
    filled = [row for row in result.calibration if row["count"]]
    figures["churn_calibration"] = charts.line_chart(
        {compared[0][1]: ([row["mean_predicted"] for row in filled], [row["observed_rate"] for row in filled])},
        title="Calibration: predicted churn probability against the observed churn rate",
        x_label="Mean predicted probability", y_label="Observed churn rate", x_range=(0, 1),
        y_range=(0, 1), diagonal="Perfect calibration", percent_axes=True, markers=True)
    return figures


def value_chart_data(customer_value, features) -> dict:
    """What the value charts draw, from the ``clv.customer_value`` table and the
    customer_features rows it values: the 12-month CLV histogram (``clv.clv_histogram_edges``,
    ``clv.clv_histogram_counts``) and, per recency x purchase-days cell (``segments.sample_stratum``),
    the customers and the sum of their P(alive). Counts and sums: on the Spark path the Score
    job computes the same dict with group-bys (glue/cdnow_score.py)."""
    from ..domain.clv import clv_histogram_counts, clv_histogram_edges
    from ..domain.segments import PURCHASE_DAYS_BINS, RECENCY_BINS, sample_stratum

    clv = customer_value["clv_12m"].to_numpy(dtype=np.float64)
    edges = clv_histogram_edges(float(clv.max()))
    rows = features.set_index("customer_id").reindex(customer_value["customer_id"])
    cells = sample_stratum(rows)
    size = len(RECENCY_BINS) * len(PURCHASE_DAYS_BINS)
    return {
        "clv_edges": edges.tolist(),
        "clv_counts": clv_histogram_counts(clv, edges).tolist(),
        "cell_customers": np.bincount(cells, minlength=size).tolist(),
        "cell_p_alive_sum": np.bincount(cells, weights=customer_value["p_alive"].to_numpy(dtype=np.float64),
                                        minlength=size).tolist(),
    }


def value_figures(chart_data: dict, holdout: dict, *,
                  currency: str = fmt.DEFAULT_CURRENCY) -> dict[str, str]:
    """The 12-month CLV distribution, mean P(alive) by recency and purchase days, and the
    holdout check (``value_chart_data``'s dict, and ``clv.holdout_check``'s result).
    ``currency``: the ISO 4217 code of the run's amounts."""
    from ..domain.segments import PURCHASE_DAYS_BINS, RECENCY_BINS

    # Spend is heavy-tailed: bins of equal width in log10 of the amount, everything under a tenth
    # of the currency's unit (10 cents, 10 pence) in the first one.
    edges = np.asarray(chart_data["clv_edges"], dtype=np.float64)
    top = int(round(edges[-1]))
    figures = {
        "clv_distribution": charts.histogram(
            edges.tolist(), list(chart_data["clv_counts"]), title="Expected value of the next 12 months per customer",
            x_label=f"12-month CLV in {currency} (log scale)", y_label="Customers",
            x_ticks=list(range(-1, top + 1)), x_tick_format=lambda v: fmt.money(10 ** v, currency, max(0, -int(v)))),
    }

    n, total = chart_data["cell_customers"], chart_data["cell_p_alive_sum"]
    mean = [float(t / c) if c else None for t, c in zip(total, n)]
    width = len(PURCHASE_DAYS_BINS)
    figures["p_alive_matrix"] = charts.heatmap(
        [b[0] for b in RECENCY_BINS], [b[0] for b in PURCHASE_DAYS_BINS],
        [mean[i * width:(i + 1) * width] for i in range(len(RECENCY_BINS))],
        title="Mean P(alive) by recency and purchase days (BG/NBD)", x_label="Purchase days",
        y_label="Days since last purchase", value_format="{:.0%}", value_range=(0, 1))

    table = holdout["by_calibration_frequency"]
    x = list(range(len(table)))
    figures["value_holdout"] = charts.line_chart(
        {"Actual": (x, [row["mean_actual"] for row in table]),
         "Predicted (BG/NBD)": (x, [row["mean_predicted"] for row in table])},
        title=(f"Holdout check: purchases {holdout['calibration_end']} .. {holdout['observation_end']} "
               "by repeat purchases before"),
        x_label="Repeat purchase days in the calibration period (last: that many or more)",
        y_label="Mean purchase days in the holdout", markers=True)
    return figures
