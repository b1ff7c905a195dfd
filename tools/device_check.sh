#!/usr/bin/env bash
# The device check in one call (docs/speed.md has the exact `run` call): install the wheels that
# tools/build_device_pack.py put in .device/wheels into a private folder (the image's own torch,
# numpy, ... stay as they are), then run tools/device_check.py, which writes
# device_check.json and device_check.md under $OUT (else .device/out).
#   tools/device_check.sh                       # on the GPU machine
#   tools/device_check.sh --device cpu --quick  # the CPU rehearsal (tests/tools)
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SITE=${DEVICE_CHECK_SITE:-/tmp/mribench-site}
# found without importing them (an import of all of them takes seconds)
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in
    ('mlflow', 'optuna', 'pydantic', 'torchio', 'nibabel', 'lime', 'pytorch_grad_cam',
     'imagehash', 'sqlalchemy', 'alembic')))"; then
  if ! ls .device/wheels/*.whl >/dev/null 2>&1; then
    echo "device_check: packages missing and no .device/wheels: run tools/build_device_pack.py" \
         "where the registries are, and carry .device" >&2
    exit 1
  fi
  timeout 180 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" .device/wheels/*.whl || { echo "wheel install failed" >&2; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# the whole call (install included) keeps to DEVICE_CHECK_BUDGET seconds (default 560: the
# device tool's ten minutes less its start); the driver gets what is left and writes its
# summary after every step, so a kill still leaves one
left=$(( ${DEVICE_CHECK_BUDGET:-560} - SECONDS ))
exec timeout $(( left + 15 )) "$PY" tools/device_check.py --budget "$left" "$@"
