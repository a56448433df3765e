"""infra/ci_sources.py: CI's cache may take an unchanged source for fresh, never a changed one."""
import os
import pathlib
import subprocess
import sys
import time

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "ci_sources.py"
OLD = 1577836800


def run(repo, *args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path):
    src = tmp_path / "clone"
    src.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=src, check=True)
    (src / "a.rs").write_text("fn a() {}\n")
    (src / "b.rs").write_text("fn b() {}\n")
    subprocess.run(["git", "add", "."], cwd=src, check=True)
    target = tmp_path / "target"
    (target / "debug" / ".fingerprint" / "shared-0123").mkdir(parents=True)
    return src, target


def test_without_a_record_nothing_is_taken_for_fresh(repo):
    src, target = repo
    out = run(src, "prepare", str(target))
    assert "no record" in out
    assert os.stat(src / "a.rs").st_mtime > OLD


def test_only_files_as_recorded_get_an_old_mtime(repo):
    src, target = repo
    run(src, "record", str(target))
    (src / "b.rs").write_text("fn b() { changed() }\n")
    out = run(src, "prepare", str(target))
    assert "1 changed" in out, out
    assert os.stat(src / "a.rs").st_mtime == OLD
    assert os.stat(src / "b.rs").st_mtime > time.time() - 60


def test_a_build_after_the_record_voids_it(repo):
    src, target = repo
    unit = target / "debug" / ".fingerprint" / "shared-0123"
    later = unit / "lib-shared"
    later.write_text("built before the record")
    run(src, "record", str(target))
    stamp = (target / ".ci-sources.stamp").stat().st_mtime
    # Rewritten in place, as cargo rewrites a fingerprint: the unit folder's own mtime stays.
    os.utime(unit, (stamp - 5, stamp - 5))
    later.write_text("built by someone else")
    os.utime(later, (stamp + 5, stamp + 5))
    out = run(src, "prepare", str(target))
    assert "not trusting" in out, out
    assert os.stat(src / "a.rs").st_mtime > OLD
