"""Are two run outputs the same data? For refactors that must not change behaviour.

    python benchmarks/same_outputs.py runs/demo-before runs/demo

Compares the sha256 of every data file the stages commit (prompt table, shard tars, score parquets,
reports, heads, backbones, the contact sheet) and prints a table: files the same, files that differ, files on one side
only. Manifests and indexes are left out: they record when they were written. A report's fields that
name where or when it ran (its output URL) are compared with that field removed. Exit status 1 when
anything differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

SKIPPED_PARTS = {"quarantine", "versions", "ckpt"}
SKIPPED_NAMES = {"run.json", "lock.json"}  # the run record holds the config, output path included
SKIPPED_SUFFIXES = (".manifest.json", ".index.json", ".tmp")
WHERE_FIELDS = {"output"}


def digest(path: Path) -> str:
    if path.suffix == ".json":
        record = json.loads(path.read_text())
        if isinstance(record, dict):
            record = {key: value for key, value in record.items() if key not in WHERE_FIELDS}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_files(root: Path) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        skipped = SKIPPED_PARTS & set(relative.parts) or path.name in SKIPPED_NAMES
        skipped = skipped or path.name.endswith(SKIPPED_SUFFIXES)
        if path.is_file() and not skipped:
            files[str(relative)] = digest(path)
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    before, after = data_files(args.before), data_files(args.after)
    same = sorted(name for name in before.keys() & after.keys() if before[name] == after[name])
    differ = sorted(name for name in before.keys() & after.keys() if before[name] != after[name])
    only = sorted(before.keys() ^ after.keys())
    print("| files | count | examples |\n|---|---:|---|")
    for label, names in (("same sha256", same), ("differ", differ), ("on one side only", only)):
        print(f"| {label} | {len(names)} | {', '.join(names[:4])} |")
    return 1 if differ or only else 0


if __name__ == "__main__":
    sys.exit(main())
