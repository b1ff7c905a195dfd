-- One PostgreSQL for the whole stack: MLflow runs, MLflow users and Optuna studies, each in
-- its own database (MLflow and Optuna would otherwise share one Alembic version table).
-- Run once by the postgres image on an empty volume; tests run it on their throwaway cluster.
CREATE DATABASE mlflow;
CREATE DATABASE mlflow_auth;
CREATE DATABASE optuna;
