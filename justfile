# reco's recipes. Run through ./just, which makes .venv first.
set shell := ["bash", "-euo", "pipefail", "-c"]
export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# list the recipes
default:
    @just --list

# the service on an embedded PostgreSQL and broker, seeded with demo data (Ctrl-C stops everything)
dev *ARGS:
    reco dev --demo {{ARGS}}

# run the service against RECO_DATABASE_URL / RECO_KAFKA_BOOTSTRAP
serve:
    reco serve

# the whole test suite (real PostgreSQL and broker, embedded); installs promtool and amtool when it can
test *ARGS:
    .ci/ensure-tools promtool=prometheus amtool=prometheus-alertmanager
    pytest --cov --cov-report=term --cov-report=xml:reports/coverage.xml --junitxml=reports/junit.xml {{ARGS}}

# ruff and mypy --strict
lint:
    ruff check .
    ruff format --check .
    mypy

# format the code
fmt:
    ruff format .
    ruff check --fix .

# apply pending migrations to RECO_DATABASE_URL
migrate:
    reco migrate

# check the migration files against a fresh embedded database
check-migrations:
    python -m tests.support.check_fresh

# benchmarks: print figures (see docs/performance.md)
bench *ARGS:
    python -m bench {{ARGS}}

# offline quality evaluation on ML-100K
evaluate PATH="../shared/datasets/ml-100k/ml-100k.inter":
    reco evaluate {{PATH}}

# chaos suite: faults under load, invariants checked (--short in CI, --long by hand): docs/operations/chaos.md
chaos *ARGS:
    python -m tests.chaos {{ARGS}}

# the older readiness-only chaos smoke, without load (by hand)
chaos-smoke *ARGS:
    python deploy/chaos/smoke.py {{ARGS}}

# API fuzzing with a larger budget: EXAMPLES fuzzing-phase cases per operation (CI runs 580)
fuzz EXAMPLES="3000" *ARGS:
    API_FUZZ_EXAMPLES={{EXAMPLES}} pytest tests/integration/test_api_fuzz.py -q {{ARGS}}

# regenerate the lock files (hashes; every platform, Python >= 3.11) from pyproject.toml and the image's build tools
lock *ARGS:
    uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes {{ARGS}} \
        --custom-compile-command "./just lock" -o requirements.lock
    uv pip compile pyproject.toml dev/pyproject.toml --extra test --extra lint --extra bench .ci/tools.in --universal \
        --python-version 3.11 --generate-hashes --constraint requirements.lock {{ARGS}} \
        --custom-compile-command "./just lock" -o requirements-dev.lock
    uv pip compile deploy/container/build-requirements.in --universal --python-version 3.11 \
        --generate-hashes --constraint requirements.lock {{ARGS}} \
        --custom-compile-command "./just lock" -o build-requirements.lock

# build the image on a local Debian base (debootstrap) and run the hardened checks (podman)
container-smoke:
    deploy/container/container_smoke.sh
