# Sourced by .ci/run: where CI keeps compiled artifacts between runs, and how that folder is kept
# from growing without bound.
#
# A fresh clone's ./target starts empty, so CI points CARGO_TARGET_DIR at a folder outside the
# clone. What makes such a folder grow is (1) incremental-compilation data, which cargo keeps per
# session and never prunes enough (45–64 GB seen), and (2) dependency artifacts of earlier
# Cargo.lock versions, which get new file names when a dependency changes and are never removed.
# So: no incremental compilation in CI (CARGO_INCREMENTAL=0; every artifact name is then a
# function of the lock file, the features and the profile, and a rebuild overwrites it), one
# folder per (Cargo.lock, toolchain) key with every other key removed, and a hard cap: a folder
# over CI_CACHE_MAX_GB (default 30) is emptied before the run.
#
# A developer's own `make test` keeps using ./target (infra/test.sh also turns incremental off).

cache_root="${CI_CACHE_ROOT:-$HOME/.cache/payments-api}"
cache_key=$( (cat Cargo.lock; rustc -vV) | sha256sum | cut -c1-16)
export CARGO_INCREMENTAL=0
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
  export CARGO_TARGET_DIR="$cache_root/target-$cache_key"
  mkdir -p "$cache_root"
  # Other keys are builds of another lock file or toolchain: nothing of them is reused.
  for old in "$cache_root"/*; do
    [[ -e "$old" && "$old" != "$CARGO_TARGET_DIR" ]] || continue
    echo "==> cache: removing $old (another Cargo.lock or toolchain)"
    rm -rf "$old"
  done
  if [[ -d "$CARGO_TARGET_DIR" ]]; then
    size_gb=$(( $(du -sk "$CARGO_TARGET_DIR" | cut -f1) / 1024 / 1024 ))
    if (( size_gb > ${CI_CACHE_MAX_GB:-30} )); then
      echo "==> cache: $CARGO_TARGET_DIR is ${size_gb} GB, over ${CI_CACHE_MAX_GB:-30}: starting cold"
      rm -rf "$CARGO_TARGET_DIR"
    fi
  fi
fi
echo "==> cache: CARGO_TARGET_DIR=$CARGO_TARGET_DIR (incremental off)"

# ci_cache_report: the folder's size at the end of a run (the figure that must stay flat).
ci_cache_report() {
  echo "==> cache: $(du -sh "$CARGO_TARGET_DIR" | cut -f1) in $CARGO_TARGET_DIR"
}
