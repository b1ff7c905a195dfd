"""Running a suite: orchestration and preflight (suite.py), executors (local, Ray), the claim
protocol (claims.py), one cell (cell.py), external test sets (external.py), Optuna tuning
(tuning.py) and clean stops on signals (stopping.py)."""
