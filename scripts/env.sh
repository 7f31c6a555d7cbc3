# Sourced by the project's scripts: one place for the cache folders and tool paths.
# Everything slow to build (OpenTofu, the cargo target dir, LocalStack's venv) lives outside the
# clone, so a fresh checkout reuses it.
STRATA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STRATA_CACHE="${STRATA_CACHE:-$HOME/.cache/strata}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$STRATA_CACHE/target}"
export LOCALSTACK_ENDPOINT="${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}"
step() { printf '\n==> %s\n' "$*" >&2; }
