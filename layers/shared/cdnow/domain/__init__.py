"""The domain: what a run is and the customer models (features, segments, churn, lifetime
value). Pure logic on tables; it imports nothing of the presentation, the adapters or the
pipeline, and never talks to AWS."""
