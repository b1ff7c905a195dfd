"""Statistics: per-run metrics (metrics.py), intervals over images and seeds (intervals.py),
paired tests between two sets of trained models (paired.py), the configuration-level test that
counts the seeds (configurations.py) and the report's comparisons of every pair (compare.py).

`compare_configurations(a, b)` ([seeds x images] 0/1 correctness of two configurations on the
same images) is the public entry point; `summarize`, `wilson`, `holm` and `two_level_bootstrap`
are re-exported from intervals.py.
"""
from mribench.stats.configurations import compare_configurations  # noqa: F401
from mribench.stats.intervals import BOOTSTRAP_SAMPLES, holm, summarize, two_level_bootstrap, wilson  # noqa: F401
