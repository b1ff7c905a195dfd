"""The only package that imports mlflow: the store (store.py), writing runs (runs.py), reading
them back (queries.py), and the store's cross-process lock (locks.py).

One experiment per suite, a parent run per invocation, a nested child run per cell. The rest of
the package calls `tracking.<function>` and never sees an MLflow type.
"""
from mribench.tracking.queries import *  # noqa: F403
from mribench.tracking.runs import *  # noqa: F403
from mribench.tracking.store import *  # noqa: F403
from mribench.tracking.store import DEFAULT_URI, TrackingError  # noqa: F401
