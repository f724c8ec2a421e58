"""A dataset's transaction history: what each delivery does to it (pure: frames in, frames out).

A dataset (``incoming/<dataset>/``) accumulates its deliveries' accepted rows, each row tagged with
the delivery that brought it (``delivery_id``, the content's SHA-256, and ``delivery_key``, the
object's key). A run computes on the history as it will be once its delivery has joined:

- a new file appends its rows;
- a file under a key already delivered is a correction: it replaces that key's rows;
- a full snapshot (the ``snapshot`` option) replaces the whole history;
- where the delivery's rows carry order ids, an order id already in the history is replaced whole
  by the delivery's lines (an export that sends an order again sends all of it);
- rows without order ids are never deduplicated across deliveries: CDNOW's identical rows are
  real orders, and only the key tells a correction from a new file.

A delivery whose content (SHA-256) is already in the history starts no computation at all:
Ingest finds it in the dataset's deliveries (``DeliveryRecord``) before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# The history's own columns beside the Transform's accepted rows (pipeline.TRANSACTION_COLUMNS).
DELIVERY_COLUMNS = ("delivery_id", "delivery_key")


@dataclass(frozen=True)
class Replacement:
    """What a delivery takes out of the history before its rows join it."""

    delivery_key: str
    snapshot: bool
    order_ids: tuple[str, ...]  # order ids the delivery carries (empty without an order-id column)


@dataclass(frozen=True)
class Combined:
    rows: pd.DataFrame  # the history after the delivery: the rows this run analyses
    kept: int
    replaced_by_key: int
    replaced_by_order: int
    replaced_by_snapshot: int
    added: int

    def counts(self) -> dict[str, int]:
        return {"history_rows_kept": self.kept, "replaced_by_key": self.replaced_by_key,
                "replaced_by_order_id": self.replaced_by_order, "replaced_by_snapshot": self.replaced_by_snapshot,
                "delivery_rows": self.added, "history_rows": len(self.rows)}


def replacement_of(delivery: pd.DataFrame, delivery_key: str, snapshot: bool) -> Replacement:
    order_ids = delivery["order_id"].dropna().unique() if "order_id" in delivery.columns else ()
    return Replacement(delivery_key, bool(snapshot), tuple(sorted(str(order) for order in order_ids)))


def combine(history: pd.DataFrame, delivery: pd.DataFrame, replacement: Replacement) -> Combined:
    """The history after ``delivery`` joins it under ``replacement``'s rules (see the module)."""
    if history.empty or replacement.snapshot:
        dropped = 0 if history.empty else len(history)
        return Combined(delivery.reset_index(drop=True), 0, 0, 0, dropped, len(delivery))
    same_key = (history["delivery_key"] == replacement.delivery_key).to_numpy()
    same_order = history["order_id"].isin(replacement.order_ids).to_numpy() if replacement.order_ids else None
    keep = ~same_key if same_order is None else ~(same_key | same_order)
    by_order = 0 if same_order is None else int((same_order & ~same_key).sum())
    kept = history.loc[keep]
    rows = pd.concat([kept, delivery], ignore_index=True) if len(kept) else delivery.reset_index(drop=True)
    return Combined(rows, int(keep.sum()), int(same_key.sum()), by_order, 0, len(delivery))
