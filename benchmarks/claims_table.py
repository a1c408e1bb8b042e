"""Print a claims table (``benchmarks/claims.py``'s ``claims.csv``) as the markdown table the README shows.

    python benchmarks/claims_table.py [benchmarks/results/claims.csv]

The README's claims table is this script's output for the committed run, pasted as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results" / "claims.csv"


def markdown(table: pd.DataFrame) -> str:
    """One row per claim: paper, claim, value, 95 % interval, target, verdict, persons and fits behind it."""
    lines = [
        "| paper | claim | value | 95 % interval | target | verdict | persons | fits |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table.itertuples():
        interval = "—" if pd.isna(r.lo) or pd.isna(r.hi) else f"{r.lo:+.3f} … {r.hi:+.3f}"
        persons = "timing rounds" if r.n_persons == 0 and r.n_fits == 0 else str(r.n_persons)
        lines.append(
            f"| {r.paper} | {r.claim} | {r.value:+.3f} | {interval} | {r.direction} {r.target:g} | "
            f"**{r.verdict}** | {persons} | {r.n_fits} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", type=Path, default=RESULTS, help="a claims.csv")
    args = ap.parse_args(argv)
    print(markdown(pd.read_csv(args.csv)))


if __name__ == "__main__":
    main()
