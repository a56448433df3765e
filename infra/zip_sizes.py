"""Zips each function that `sam build` produced, as Lambda receives it, and prints its size.

Usage: python3 infra/zip_sizes.py .aws-sam/build
"""
import pathlib
import sys
import zipfile


def main(build_dir: str) -> int:
    root = pathlib.Path(build_dir)
    out = root.parent / "zips"
    out.mkdir(exist_ok=True)
    functions = sorted(p for p in root.iterdir() if (p / "bootstrap").is_file())
    if not functions:
        print(f"no function artifacts under {root}", file=sys.stderr)
        return 1
    print(f"{'function':<28}{'bootstrap':>12}{'zip':>12}")
    for function in functions:
        archive = out / f"{function.name}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(function / "bootstrap", "bootstrap")
        raw = (function / "bootstrap").stat().st_size
        print(f"{function.name:<28}{raw:>12,}{archive.stat().st_size:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build"))
