"""Defaults the models themselves take, in a module that imports nothing.

The models (``segments``, ``churn``, ``clv``) run on Glue too, in the Score job, which has
numpy, pandas, scipy and scikit-learn but not pydantic: a default they use lives here, not in
``runs`` (whose request models need pydantic). Each default still exists once; the template's
parameters are checked against it (tests/unit/test_settings.py).
"""

# Days after the analysis date in which a customer who buys nothing has churned.
DEFAULT_CHURN_HORIZON_DAYS = 180

# Each model's fit on the Spark path, under the run's fits/ folder (``RunLayout.fit``): the model
# steps write them, the Score job (glue/cdnow_score.py) applies them.
FIT_FILES = {"segment": "segment.json", "churn": "churn.bin", "value": "value.json"}
