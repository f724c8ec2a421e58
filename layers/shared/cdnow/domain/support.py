"""What the data must hold for a model to be trained on it.

A model the data cannot support (too few customers, one churn class only, a history shorter
than the churn horizon, no repeat buyer to fit spend on) is no fault of the run: the domain
raises ``InsufficientData`` with the reason, the pipeline skips that model with a warning and
publishes the rest. Any other exception is a genuine fault and still fails the run.
"""

from __future__ import annotations


class InsufficientData(ValueError):
    """The data cannot support this model; ``str(exc)`` says why, in a user's words."""
