# Sourced by the project's scripts: one place for the cache folders and tool paths.
# Everything slow to build (OpenTofu, the cargo target dir, LocalStack's venv) lives outside the
# clone, so a fresh checkout reuses it.
STRATA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export STRATA_CACHE="${STRATA_CACHE:-$HOME/.cache/strata}"
# One cargo target dir per clone, outside it: a later run of the same clone is incremental, and
# two clones never share one (a shared dir let one clone's tests run the other's binaries:
# cargo re-links target/debug/<bin> only when it rebuilds, so a fresh clone could find the
# binary the last *other* clone built there). `.clone-path` lets scripts/test prune the dirs of
# clones that are gone and unused for a week (a CI checkout at a fixed path comes and goes
# between runs; its warm dir is kept).
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
  CARGO_TARGET_DIR="$STRATA_CACHE/targets/$(basename "$STRATA_ROOT")-$(printf %s "$STRATA_ROOT" | sha256sum | cut -c1-12)"
  mkdir -p "$CARGO_TARGET_DIR"
  # Rewritten on every use: its age says when the clone last ran (the prune keeps recent ones).
  printf '%s\n' "$STRATA_ROOT" >"$CARGO_TARGET_DIR/.clone-path"
fi
export CARGO_TARGET_DIR
export LOCALSTACK_ENDPOINT="${LOCALSTACK_ENDPOINT:-http://127.0.0.1:4566}"
# Called from inside `cargo test` (the acceptance harness runs scripts/package), the outer
# cargo's per-package variables would leak into the nested cargo build and change crates'
# fingerprints (ring's build reads CARGO_MANIFEST_DIR), so the nested build recompiled ring and
# everything above it, and the next plain build recompiled them back. Drop them here.
for _v in $(compgen -e); do
  case "$_v" in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_EXE_* | CARGO_BIN_NAME | \
      CARGO_PRIMARY_PACKAGE | CARGO_TARGET_TMPDIR) unset "$_v" ;;
  esac
done
unset _v
step() { printf '\n==> %s\n' "$*" >&2; }
