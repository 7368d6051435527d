"""The stored bench runs in data/results/ as markdown (aura_lab.harness.report generates it).

    .venv/bin/python tools/results_tables.py [FAMILY ...]   # print the stored runs' tables
    .venv/bin/python tools/results_tables.py --targets      # print the targets table
    .venv/bin/python tools/results_tables.py --readme       # rewrite the README's targets table

The docs site generates its tables at build time (docs/hooks.py); the README holds its one
table between ``<!-- aura:targets -->`` and ``<!-- /aura:targets -->``, and
tests/integration/test_docs.py fails while that block differs from what this script writes.
"""

import sys
from pathlib import Path

from aura_lab.harness import report

README = Path(__file__).resolve().parent.parent / "README.md"
BEGIN, END = "<!-- aura:targets -->", "<!-- /aura:targets -->"


def readme_with_targets(text: str) -> str:
    """``text`` (the README) with the block between the markers regenerated."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{report.targets_table()}\n{END}{tail}"


if __name__ == "__main__":
    args = sys.argv[1:]
    if args == ["--readme"]:
        README.write_text(readme_with_targets(README.read_text()))
    elif args == ["--targets"]:
        print(report.targets_table())
    else:
        for fam in args or report.stored_families():
            print(f"### {report.results_table(fam)}")
