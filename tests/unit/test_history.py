"""What each delivery does to a dataset's history (cdnow.domain.history, pure)."""

import pandas as pd

from cdnow.domain.history import combine, replacement_of
from cdnow.adapters.history import table_name


def rows(delivery: str, key: str, lines) -> pd.DataFrame:
    frame = pd.DataFrame(lines, columns=["customer_id", "order_date", "quantity", "amount", "is_return", "order_id"])
    return frame.assign(order_date=pd.to_datetime(frame["order_date"]), delivery_id=delivery, delivery_key=key)


JAN = rows("d1", "incoming/shop/jan.csv", [("a", "2011-01-03", 1, 5.0, False, "1"), ("b", "2011-01-04", 2, 8.0, False, "2")])
FEB = rows("d2", "incoming/shop/feb.csv", [("a", "2011-02-01", 1, 3.0, False, "3")])


def history(*deliveries) -> pd.DataFrame:
    return pd.concat(deliveries, ignore_index=True)


def test_a_new_file_appends_its_rows():
    combined = combine(JAN, FEB, replacement_of(FEB, "incoming/shop/feb.csv", snapshot=False))
    assert len(combined.rows) == 3 and combined.counts()["history_rows_kept"] == 2
    assert combined.counts() == {"history_rows_kept": 2, "replaced_by_key": 0, "replaced_by_order_id": 0,
                                 "replaced_by_snapshot": 0, "delivery_rows": 1, "history_rows": 3}


def test_a_file_under_a_key_already_delivered_replaces_that_key_s_rows():
    corrected = rows("d3", "incoming/shop/jan.csv", [("a", "2011-01-03", 1, 6.0, False, "1")])
    combined = combine(history(JAN, FEB), corrected, replacement_of(corrected, "incoming/shop/jan.csv", False))
    assert sorted(combined.rows["delivery_id"]) == ["d2", "d3"] and combined.replaced_by_key == 2
    assert combined.rows.loc[combined.rows["customer_id"] == "a", "amount"].sum() == 9.0


def test_an_order_id_already_in_the_history_is_replaced_whole():
    again = rows("d3", "incoming/shop/mar.csv", [("b", "2011-01-04", 1, 4.0, False, "2"),
                                                 ("c", "2011-03-01", 1, 1.0, False, "4")])
    combined = combine(history(JAN, FEB), again, replacement_of(again, "incoming/shop/mar.csv", False))
    assert combined.replaced_by_order == 1 and len(combined.rows) == 4
    assert combined.rows.loc[combined.rows["order_id"] == "2", "amount"].tolist() == [4.0]


def test_rows_without_order_ids_are_never_deduplicated_across_files():
    plain = rows("d3", "incoming/shop/again.csv", [("a", "2011-01-03", 1, 5.0, False, None)])
    earlier = rows("d1", "incoming/shop/jan.csv", [("a", "2011-01-03", 1, 5.0, False, None)])
    combined = combine(earlier, plain, replacement_of(plain, "incoming/shop/again.csv", False))
    assert len(combined.rows) == 2  # an identical row is another order (CDNOW's 255 are real)


def test_a_snapshot_replaces_the_whole_history():
    combined = combine(history(JAN, FEB), FEB.assign(delivery_id="d9"), replacement_of(FEB, "incoming/shop/all.csv", True))
    assert list(combined.rows["delivery_id"]) == ["d9"] and combined.replaced_by_snapshot == 3


def test_each_dataset_has_a_glue_table_name_of_its_own():
    assert table_name("shop-eu").startswith("history_shop_eu_") and table_name("shop-eu") != table_name("shop_eu")
    assert table_name("Shop.EU") == table_name("Shop.EU") and len(table_name("x" * 64)) <= 255
