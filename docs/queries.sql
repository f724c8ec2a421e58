-- Athena (engine v3) queries a marketer runs on the tables a CDNOW customer-analytics run
-- publishes. Database: cdnow_analytics (the stack's DatabaseName parameter). Every table is
-- partitioned by run_id, one partition per published run; the runs table says which run is which.
--
-- Run one query at a time in the Athena console (workgroup with a results location), or e.g.
--   aws athena start-query-execution --query-execution-context Database=cdnow_analytics \
--       --work-group primary --query-string "$(sed -n '/name: latest_run/,/;/p' docs/queries.sql)"
--
-- The "latest" CTE picks the newest published run that has the tables the query reads (a model
-- the data could not support publishes no partition: the runs table lists each run's
-- published_tables and its warnings); to be sure Athena reads one partition only, replace it
-- with a literal:  WHERE f.run_id = 'cdnow-master-35f83c2e516f'.
--
-- Every query here runs in the tests (tests/e2e/test_stack_cli.py), as written, in DuckDB over
-- the parquet files two emulated runs publish, read where the Glue catalog's partitions point,
-- and its result is checked against those tables. Athena does not run offline; the few
-- differences between its dialect and DuckDB's are handled in one place, tests/e2e/athena_sql.py
-- (its docstring lists them): write Athena SQL here, and teach that module a function DuckDB
-- lacks rather than changing a query. Each query follows a "-- name:" line and ends with ";".


-- name: latest_run
-- The newest published run: what was analysed, as of when, and how clean the input was.
SELECT r.run_id, r.input_uri, r.analysis_date, r.rows_read, r.rows_quarantined, r.rows_excluded,
       r.customers, r.currency, r.churn_horizon_days, r.warnings, r.published_at
FROM cdnow_analytics.runs AS r
ORDER BY r.published_at DESC
LIMIT 1;


-- name: win_back
-- Customers to win back: high churn risk among the top 10% by past spend, with what they are
-- still expected to be worth and the main reason the model sees them leaving.
WITH latest AS (
    SELECT r.run_id FROM cdnow_analytics.runs AS r
    WHERE contains(split(r.published_tables, ','), 'churn_scores')
      AND contains(split(r.published_tables, ','), 'customer_value')
      AND contains(split(r.published_tables, ','), 'customer_segments')
    ORDER BY r.published_at DESC LIMIT 1
),
spend AS (
    SELECT approx_percentile(f.monetary_total, 0.9) AS top_decile_spend
    FROM cdnow_analytics.customer_features AS f
    JOIN latest AS l ON f.run_id = l.run_id
)
SELECT f.customer_id, sg.segment_name, cs.churn_probability, cs.top_driver_1,
       f.monetary_total, f.purchase_days, f.last_purchase_date, f.recency_days,
       cv.p_alive, cv.clv_12m
FROM cdnow_analytics.customer_features AS f
JOIN latest AS l ON f.run_id = l.run_id
JOIN cdnow_analytics.churn_scores AS cs ON cs.run_id = f.run_id AND cs.customer_id = f.customer_id
JOIN cdnow_analytics.customer_value AS cv ON cv.run_id = f.run_id AND cv.customer_id = f.customer_id
JOIN cdnow_analytics.customer_segments AS sg ON sg.run_id = f.run_id AND sg.customer_id = f.customer_id
CROSS JOIN spend AS s
WHERE cs.risk_band = 'high' AND f.monetary_total >= s.top_decile_spend
ORDER BY f.monetary_total DESC
LIMIT 500;


-- name: segment_profiles_latest
-- What each segment of the newest run looks like.
WITH latest AS (
    SELECT r.run_id FROM cdnow_analytics.runs AS r
    WHERE contains(split(r.published_tables, ','), 'segment_profiles')
    ORDER BY r.published_at DESC LIMIT 1
)
SELECT p.segment_name, p.recency_status, p.customers, p.customer_share, p.revenue, p.revenue_share,
       p.median_recency_days, p.mean_purchase_days, p.mean_monetary_total, p.mean_monetary_avg_per_purchase
FROM cdnow_analytics.segment_profiles AS p
JOIN latest AS l ON p.run_id = l.run_id
ORDER BY p.segment_rank;


-- name: segment_sizes_over_runs
-- Segment sizes and revenue shares run after run: is the customer base getting healthier?
SELECT r.analysis_date, r.published_at, p.run_id, p.segment_name, p.customers, p.customer_share,
       p.revenue_share
FROM cdnow_analytics.segment_profiles AS p
JOIN cdnow_analytics.runs AS r ON r.run_id = p.run_id
ORDER BY r.published_at, p.segment_rank;


-- name: clv_by_segment
-- Expected value of the next 12 months by segment in the newest run.
WITH latest AS (
    SELECT r.run_id FROM cdnow_analytics.runs AS r
    WHERE contains(split(r.published_tables, ','), 'customer_value')
      AND contains(split(r.published_tables, ','), 'customer_segments')
    ORDER BY r.published_at DESC LIMIT 1
)
SELECT sg.segment_name,
       count(*) AS customers,
       sum(cv.clv_12m) AS clv_12m_total,
       avg(cv.clv_12m) AS clv_12m_mean,
       approx_percentile(cv.clv_12m, 0.5) AS clv_12m_median,
       avg(cv.p_alive) AS p_alive_mean,
       sum(cv.expected_purchases_365d) AS expected_purchases_365d
FROM cdnow_analytics.customer_value AS cv
JOIN latest AS l ON cv.run_id = l.run_id
JOIN cdnow_analytics.customer_segments AS sg ON sg.run_id = cv.run_id AND sg.customer_id = cv.customer_id
GROUP BY sg.segment_name
ORDER BY clv_12m_total DESC;


-- name: risk_by_segment
-- How many customers of each segment are at low, medium or high churn risk in the newest run.
WITH latest AS (
    SELECT r.run_id FROM cdnow_analytics.runs AS r
    WHERE contains(split(r.published_tables, ','), 'churn_scores')
      AND contains(split(r.published_tables, ','), 'customer_segments')
    ORDER BY r.published_at DESC LIMIT 1
)
SELECT sg.segment_name, cs.risk_band, count(*) AS customers,
       avg(cs.churn_probability) AS mean_churn_probability
FROM cdnow_analytics.churn_scores AS cs
JOIN latest AS l ON cs.run_id = l.run_id
JOIN cdnow_analytics.customer_segments AS sg ON sg.run_id = cs.run_id AND sg.customer_id = cs.customer_id
GROUP BY sg.segment_name, cs.risk_band
ORDER BY sg.segment_name, cs.risk_band;


-- name: migration_matrix
-- Where the customers of each segment of the previous run went in the newest run (one row per
-- from/to pair; the table exists once two runs have been published).
WITH latest AS (
    SELECT r.run_id FROM cdnow_analytics.runs AS r
    WHERE contains(split(r.published_tables, ','), 'segment_migration')
    ORDER BY r.published_at DESC LIMIT 1
)
SELECT m.previous_run_id, m.from_segment, m.to_segment, m.customers,
       CAST(m.customers AS double) / sum(m.customers) OVER (PARTITION BY m.from_segment) AS share_of_from_segment
FROM cdnow_analytics.segment_migration AS m
JOIN latest AS l ON m.run_id = l.run_id
ORDER BY m.from_segment, m.customers DESC;


-- name: migration_matrix_wide
-- The same matrix, one row per previous segment, the new segments as a map.
WITH latest AS (
    SELECT r.run_id FROM cdnow_analytics.runs AS r
    WHERE contains(split(r.published_tables, ','), 'segment_migration')
    ORDER BY r.published_at DESC LIMIT 1
)
SELECT m.from_segment, map_agg(m.to_segment, m.customers) AS customers_by_to_segment
FROM cdnow_analytics.segment_migration AS m
JOIN latest AS l ON m.run_id = l.run_id
GROUP BY m.from_segment
ORDER BY m.from_segment;


-- name: churn_model_over_runs
-- Is the churn model still better than the simple recency rule, run after run?
SELECT r.analysis_date, mm.run_id,
       max(CASE WHEN mm.metric = 'roc_auc' THEN mm.value END) AS roc_auc,
       max(CASE WHEN mm.metric = 'recency_baseline_roc_auc' THEN mm.value END) AS recency_rule_roc_auc,
       max(CASE WHEN mm.metric = 'pr_auc' THEN mm.value END) AS pr_auc,
       max(CASE WHEN mm.metric = 'share_high_risk' THEN mm.value END) AS share_high_risk
FROM cdnow_analytics.model_metrics AS mm
JOIN cdnow_analytics.runs AS r ON r.run_id = mm.run_id
WHERE mm.model = 'churn'
GROUP BY r.analysis_date, r.published_at, mm.run_id
ORDER BY r.published_at;


-- name: data_quality_over_runs
-- Rows read, excluded (guest lines) and quarantined per run: a rising share means the export
-- upstream changed.
SELECT r.published_at, r.run_id, r.input_uri, r.rows_read, r.rows_excluded, r.rows_quarantined,
       CAST(r.rows_quarantined AS double) / nullif(r.rows_read, 0) AS quarantined_share
FROM cdnow_analytics.runs AS r
ORDER BY r.published_at DESC;
