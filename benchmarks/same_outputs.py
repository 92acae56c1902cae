"""Are two run outputs the same data? For refactors that must not change behaviour.

    python benchmarks/same_outputs.py runs/demo-before runs/demo

Compares the sha256 of every data file the stages commit (prompt table, shard tars, score parquets,
reports, heads, backbones, the contact sheet) and prints a table: files the same, files that differ, files on one side
only, and for a JSON file that differs, which of its fields do. Manifests and indexes are left out: they
record when they were written. Where a run wrote its output is compared with that removed: a JSON
report's `output` field, and the output's path inside a markdown report; so is a report's `busy_s`.
Exit status 1 when anything differs.
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
TIMING_FIELDS = {"busy_s"}  # a whole stage's report records how long its work took


def record(path: Path) -> object:
    """A JSON file's content less the fields that say where it ran and how long it took."""
    content = json.loads(path.read_text())
    left_out = WHERE_FIELDS | TIMING_FIELDS
    return {k: v for k, v in content.items() if k not in left_out} if isinstance(content, dict) else content


def digest(path: Path, root: Path) -> str:
    if path.suffix == ".json":
        return hashlib.sha256(json.dumps(record(path), sort_keys=True).encode()).hexdigest()
    if path.suffix == ".md":
        return hashlib.sha256(path.read_text().replace(str(root), "OUTPUT").encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_files(root: Path) -> dict[str, str]:
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        skipped = SKIPPED_PARTS & set(relative.parts) or path.name in SKIPPED_NAMES
        skipped = skipped or path.name.endswith(SKIPPED_SUFFIXES)
        if path.is_file() and not skipped:
            files[str(relative)] = digest(path, root)
    return files


def changed_fields(before: Path, after: Path) -> list[str]:
    """The top-level fields of two JSON records that differ, are new (+) or gone (-)."""
    old, new = record(before), record(after)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ["(whole file)"]
    return [
        f"{'+' if key not in old else '-' if key not in new else ''}{key}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


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
    for name in differ:
        if name.endswith(".json"):
            print(f"{name}: fields {', '.join(changed_fields(args.before / name, args.after / name))}")
    return 1 if differ or only else 0


if __name__ == "__main__":
    sys.exit(main())
