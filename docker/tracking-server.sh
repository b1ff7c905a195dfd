#!/bin/sh
# The shared MLflow tracking server: runs and users on PostgreSQL, basic authentication on.
# docker/compose.yaml runs it, and tests/test_ray_executor.py runs this same script.
#
# Secrets, each from the environment or from a file named by NAME_FILE (Docker secrets); none
# has a default, and the server does not start without them:
#   MLFLOW_DB_PASSWORD              PostgreSQL password of MLFLOW_DB_USER
#   MLFLOW_AUTH_ADMIN_PASSWORD      the MLflow admin's password (the admin is created on first
#                                   start; later starts keep the stored password)
#   MLFLOW_FLASK_SERVER_SECRET_KEY  CSRF key of the auth app's forms
# Settings: MLFLOW_DB_HOST (db), MLFLOW_DB_PORT (5432), MLFLOW_DB_USER (mlflow),
#   MLFLOW_AUTH_ADMIN_USERNAME (admin), MLFLOW_HOST (127.0.0.1: this machine only),
#   MLFLOW_PORT (5000), MLFLOW_ARTIFACTS (/artifacts). Extra arguments go to `mlflow server`.
# Databases (docker/postgres-init.sql): mlflow (runs), mlflow_auth (users), optuna (studies).
set -eu

secret() {  # secret NAME: keep $NAME, else read the file $NAME_FILE, else stop
  eval "value=\${$1:-}"
  eval "file=\${$1_FILE:-}"
  if [ -z "$value" ] && [ -n "$file" ]; then
    value=$(cat "$file")
  fi
  if [ -z "$value" ]; then
    echo "tracking-server: set $1 or $1_FILE (there is no default)" >&2
    exit 2
  fi
  export "$1=$value"
}

secret MLFLOW_DB_PASSWORD
secret MLFLOW_AUTH_ADMIN_PASSWORD
secret MLFLOW_FLASK_SERVER_SECRET_KEY
export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"
# libpq reads the password from the environment: it never appears in a URI, a config file or
# the process list
export PGPASSWORD="$MLFLOW_DB_PASSWORD"
db="postgresql+psycopg://${MLFLOW_DB_USER:-mlflow}@${MLFLOW_DB_HOST:-db}:${MLFLOW_DB_PORT:-5432}"

# the auth app reads its store from an ini file: written per start, holding no secret
auth_ini=$(mktemp "${TMPDIR:-/tmp}/mlflow-auth-XXXXXX")
cat > "$auth_ini" <<INI
[mlflow]
default_permission = READ
database_uri = $db/mlflow_auth
admin_username = $MLFLOW_AUTH_ADMIN_USERNAME
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$auth_ini"

exec mlflow server --app-name basic-auth \
  --host "${MLFLOW_HOST:-127.0.0.1}" --port "${MLFLOW_PORT:-5000}" \
  --backend-store-uri "$db/mlflow" \
  --artifacts-destination "${MLFLOW_ARTIFACTS:-/artifacts}" "$@"
