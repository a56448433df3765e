"""Lets CI's cached target folder see which sources really changed since the run that built it.

Cargo decides whether a workspace crate is fresh by comparing its sources' mtimes with its last
build. In a fresh clone every file is new, so every workspace crate would be rebuilt on every run
(all 21 functions' fat-LTO links again, ~7 min here) even when nothing changed. So, by content:

  record DIR    after a run that built everything: store each tracked file's SHA-256 beside the
                cache (DIR/.ci-sources.json) and stamp the time (DIR/.ci-sources.stamp).
  prepare DIR   before a run: every tracked file whose content is the one recorded gets an old
                mtime (cargo: fresh); a changed or new file keeps its clone-time mtime (cargo:
                rebuild it and what depends on it).

A stale artifact is never taken for fresh: without a record nothing is touched; a run that fails
records nothing, so the next run still sees its changes; and if anything was built in DIR after
the stamp (a developer's build sharing the folder, say), the record is not trusted at all.

Usage: python3 infra/ci_sources.py prepare|record CARGO_TARGET_DIR
"""
import hashlib
import json
import os
import pathlib
import subprocess
import sys

# 2020-01-01T00:00:00Z: older than any build in the cache.
OLD = 1577836800


def tracked_files() -> dict:
    names = subprocess.run(
        ["git", "ls-files", "-z"], check=True, capture_output=True
    ).stdout.decode().split("\0")
    digests = {}
    for name in filter(None, names):
        path = pathlib.Path(name)
        if path.is_file() and not path.is_symlink():
            digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def built_after(target: pathlib.Path, stamp: pathlib.Path) -> bool:
    """Whether any fingerprint in the target folder is newer than the stamp. The files inside
    each unit's fingerprint folder are what cargo rewrites on a build; the folder's own mtime
    moves only when a file is created or removed in it."""
    limit = stamp.stat().st_mtime
    # target/<profile>/.fingerprint and target/<triple>/<profile>/.fingerprint
    for fingerprints in [*target.glob("*/.fingerprint"), *target.glob("*/*/.fingerprint")]:
        for unit in fingerprints.iterdir():
            for entry in [unit, *(unit.iterdir() if unit.is_dir() else [])]:
                if entry.stat().st_mtime > limit:
                    return True
    return False


def prepare(target: pathlib.Path) -> int:
    record, stamp = target / ".ci-sources.json", target / ".ci-sources.stamp"
    if not (record.is_file() and stamp.is_file()):
        print("==> sources: no record of an earlier run; every workspace crate is built")
        return 0
    if built_after(target, stamp):
        print("==> sources: the cache was built in after its record; not trusting it, every workspace crate is built")
        return 0
    recorded = json.loads(record.read_text())
    current = tracked_files()
    changed = sorted(name for name, digest in current.items() if recorded.get(name) != digest)
    for name, digest in current.items():
        if recorded.get(name) == digest:
            os.utime(name, (OLD, OLD))
    print(f"==> sources: {len(current) - len(changed)} files as recorded, {len(changed)} changed or new")
    for name in changed[:20]:
        print(f"    changed: {name}")
    return 0


def record(target: pathlib.Path) -> int:
    (target / ".ci-sources.json").write_text(json.dumps(tracked_files(), sort_keys=True))
    (target / ".ci-sources.stamp").touch()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("prepare", "record"):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    target_dir = pathlib.Path(sys.argv[2])
    target_dir.mkdir(parents=True, exist_ok=True)
    sys.exit(prepare(target_dir) if sys.argv[1] == "prepare" else record(target_dir))
