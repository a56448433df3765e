"""Zips each function that `sam build` produced, as `sam deploy` zips it, prints its size and
fails when a zip is over its budget (infra/zip-budgets.json).

The budgets keep issue 5's gains: each sits just above the size reached when it was set (see
bench/RESULTS.md). A function that grows past it fails CI; raise a budget only with a reason in
the commit message.

Usage: python3 infra/zip_sizes.py .aws-sam/build [infra/zip-budgets.json]
"""
import json
import pathlib
import re
import sys
import zipfile


def packages_by_resource(template: pathlib.Path) -> dict:
    """Each function resource of template.yaml and its package (`CodeUri: functions/<package>`):
    sam build names its artifacts by resource, the budgets are kept by package."""
    packages, resource = {}, None
    for line in template.read_text().splitlines():
        top = re.match(r"^  ([A-Za-z0-9]+):\s*$", line)
        if top:
            resource = top.group(1)
        uri = re.match(r"^\s+CodeUri:\s*functions/([a-z0-9-]+)/?\s*$", line)
        if uri and resource:
            packages[resource] = uri.group(1)
    return packages


def main(build_dir: str, budgets_file: str) -> int:
    root = pathlib.Path(build_dir)
    budgets = json.loads(pathlib.Path(budgets_file).read_text())["bytes"]
    packages = packages_by_resource(pathlib.Path("template.yaml"))
    out = root.parent / "zips"
    out.mkdir(exist_ok=True)
    functions = sorted(p for p in root.iterdir() if (p / "bootstrap").is_file())
    if not functions:
        print(f"no function artifacts under {root}", file=sys.stderr)
        return 1
    failures = []
    print(f"{'function':<28}{'bootstrap':>12}{'zip':>12}{'budget':>12}")
    for function in functions:
        archive = out / f"{function.name}.zip"
        # ZIP_DEFLATED at zlib's default level: what sam package / sam deploy upload.
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(function / "bootstrap", "bootstrap")
        raw = (function / "bootstrap").stat().st_size
        size = archive.stat().st_size
        package = packages.get(function.name, function.name)
        budget = budgets.get(package)
        print(f"{package:<28}{raw:>12,}{size:>12,}{budget or 0:>12,}")
        if budget is None:
            failures.append(f"{package}: no budget in {budgets_file}")
        elif size > budget:
            failures.append(f"{package}: zip is {size:,} bytes, over its budget of {budget:,}")
    for failure in failures:
        print(f"zip budget: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(
        main(
            args[0] if args else ".aws-sam/build",
            args[1] if len(args) > 1 else "infra/zip-budgets.json",
        )
    )
