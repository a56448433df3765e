# Sourced by .ci/run: what CI keeps between runs outside the clone, and how that is kept from
# growing without bound or from being rebuilt on every run.
#
# A fresh clone's ./target starts empty, so CI points CARGO_TARGET_DIR at a folder outside the
# clone. What makes such a folder grow is (1) incremental-compilation data, which cargo keeps per
# session and never prunes enough (45–64 GB seen), and (2) dependency artifacts of earlier
# Cargo.lock versions, which get new file names when a dependency changes and are never removed.
# So: no incremental compilation in CI (CARGO_INCREMENTAL=0; every artifact name is then a
# function of the lock file, the features and the profile, and a rebuild overwrites it), one
# folder per (locked dependencies, toolchain) key with every other key removed, and a hard cap: a folder
# over CI_CACHE_MAX_GB (default 30) is emptied before the run.
#
# The pinned tools (./.venv, ./.tools) live there too, linked into the clone: cargo-lambda's
# linker wrappers name the path of the cargo-lambda that made them, and cargo rebuilds every
# release artifact when the linker's path changes, so a venv inside each new clone made every
# run's arm64 build a cold one. The venv folder is keyed by the requirement files.
#
# A developer's own `make test` keeps using ./target and ./.venv.

cache_root="${CI_CACHE_ROOT:-$HOME/.cache/payments-api}"
# The key is the lock file's *dependencies* (its packages with a `source`: crates.io, git), not
# the workspace's own packages: a new function adds an entry to Cargo.lock but changes no
# dependency, and keying on the whole file made each added function a cold run (~60 min).
# What a workspace package's artifacts leave behind is small, and the size cap bounds it.
locked_dependencies() {
  python3 -c 'import sys; print("\n\n".join(b for b in open("Cargo.lock").read().split("\n\n") if "\nsource = " in b))'
}
cache_key=$( (locked_dependencies; rustc -vV) | sha256sum | cut -c1-16)
tools_key=$(cat infra/requirements.txt infra/constraints.txt | sha256sum | cut -c1-16)
export CARGO_INCREMENTAL=0
mkdir -p "$cache_root"
target_default="$cache_root/target-$cache_key"
venv_dir="$cache_root/venv-$tools_key"
tools_dir="$cache_root/tools"
# The mutation tests' own builds (infra/mutants.sh), and the commit of the last green run (what
# the in-diff mutation step compares against).
export MUTANTS_TARGET_DIR="$cache_root/mutants-$cache_key"
last_green_file="$cache_root/last-green-commit"
# Other keys are builds of another lock file, toolchain or tool set: nothing of them is reused.
for old in "$cache_root"/*; do
  case "$old" in "$target_default" | "$venv_dir" | "$tools_dir" | "$MUTANTS_TARGET_DIR" | "$last_green_file") continue ;; esac
  [[ -e "$old" ]] || continue
  echo "==> cache: removing $old (another Cargo.lock, toolchain or tool set)"
  rm -rf "$old"
done
if [[ -z "${CARGO_TARGET_DIR:-}" ]]; then
  export CARGO_TARGET_DIR="$target_default"
  if [[ -d "$CARGO_TARGET_DIR" ]]; then
    # A workspace package's test and binary executables (~200 MB each in debug) get a new hash
    # whenever its own dependency list changes, which the key ignores, and the old ones stay:
    # 40 GB of superseded ones were seen in one day. Only the newest of each name is kept;
    # cargo rebuilds one that a fingerprint still names, should it ever be needed.
    python3 - "$CARGO_TARGET_DIR" <<'PRUNE'
import collections, os, re, sys
groups = collections.defaultdict(list)
for profile in ("debug", "release"):
    deps = os.path.join(sys.argv[1], profile, "deps")
    if not os.path.isdir(deps):
        continue
    for name in os.listdir(deps):
        match = re.fullmatch(r"(.+)-[0-9a-f]{16}", name)
        path = os.path.join(deps, name)
        if match and os.path.isfile(path) and os.access(path, os.X_OK):
            groups[(deps, match.group(1))].append((os.path.getmtime(path), path))
freed = 0
for files in groups.values():
    for _, path in sorted(files)[:-1]:
        freed += os.path.getsize(path)
        os.remove(path)
if freed:
    print(f"==> cache: removed {freed / 1e9:.1f} GB of superseded test and binary executables")
PRUNE
    size_gb=$(( $(du -sk "$CARGO_TARGET_DIR" | cut -f1) / 1024 / 1024 ))
    if (( size_gb > ${CI_CACHE_MAX_GB:-30} )); then
      echo "==> cache: $CARGO_TARGET_DIR is ${size_gb} GB, over ${CI_CACHE_MAX_GB:-30}: starting cold"
      rm -rf "$CARGO_TARGET_DIR"
    fi
  fi
fi
echo "==> cache: CARGO_TARGET_DIR=$CARGO_TARGET_DIR (incremental off)"

# Unchanged sources keep the cache's builds of them fresh (infra/ci_sources.py says how, and why
# a stale build is never taken for a fresh one). First, so that the Makefile below sees the
# requirement files as old when they are as recorded.
python3 infra/ci_sources.py prepare "$CARGO_TARGET_DIR"

# The venv is made by the Makefile's own rule, at its real path (console scripts' shebangs name
# it, so it must not be made through the link), then linked in; the Makefile then finds it
# installed. DynamoDB Local's install (verified by digest, keyed by version) is shared the same way.
mkdir -p "$tools_dir"
make --no-print-directory VENV="$venv_dir" "$venv_dir/.installed"
for pair in ".venv:$venv_dir" ".tools:$tools_dir"; do
  link=${pair%%:*} dir=${pair#*:}
  # A checkout's own folder (someone running .ci/run by hand) is left as it is.
  if [[ -L "$link" || ! -e "$link" ]]; then
    ln -sfn "$dir" "$link"
    echo "==> cache: $link -> $dir"
  else
    echo "==> cache: keeping this checkout's own $link"
  fi
done

# ci_cache_report: the folder's size at the end of a run (the figure that must stay flat).
ci_cache_report() {
  echo "==> cache: $(du -sh "$CARGO_TARGET_DIR" | cut -f1) in $CARGO_TARGET_DIR; $(du -sh "$cache_root" | cut -f1) in $cache_root"
}

# ci_mutants_base: what this run's change is measured from for mutation testing: the commit of
# the last green run when it is an ancestor of this one, else the parent commit (a fresh
# machine, or a rewritten history).
ci_mutants_base() {
  local last
  last=$(cat "$last_green_file" 2>/dev/null || true)
  if [[ -n "$last" ]] && git merge-base --is-ancestor "$last" HEAD 2>/dev/null; then
    echo "$last"
  else
    git rev-parse HEAD~1
  fi
}

# ci_record_green: called at the end of a green run.
ci_record_green() {
  git rev-parse HEAD >"$last_green_file"
}
