"""Precision and recall of keel's content filters on the labelled corpus, and their cost per scan.

    .venv/bin/python bench/filter_corpus.py            # figures
    .venv/bin/python bench/filter_corpus.py --errors   # and every miss and false alarm

The corpus (tests/policies/data/filter_corpus.jsonl) has one case a line: a text and the kinds it
contains (``email``, ``phone``, ``card``, ``iban``, ``national_id``, ``secret``, ``injection``), none
for the negatives. Cases marked ``held_out`` were written after the detectors were frozen: round 1
(``held_out: 1``) was then used to improve them, round 2 (``held_out: 2``) was written after that and
has not been used to change anything. Each is reported separately. A kind counts as found when
`scan_text` reports at least one finding of it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from keel.policies.filters import scan_text

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "policies" / "data" / "filter_corpus.jsonl"
KINDS = ("email", "phone", "card", "iban", "national_id", "secret", "injection")


def load(path: Path = CORPUS) -> list[dict[str, Any]]:
    """The corpus's cases."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def evaluate(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-kind and overall true/false positives, false negatives, precision and recall."""
    counts = {k: {"tp": 0, "fp": 0, "fn": 0} for k in KINDS}
    errors: list[str] = []
    started = time.perf_counter()
    for case in cases:
        found = {f.kind for f in scan_text(case["text"])}
        expected = set(case["labels"])
        for kind in KINDS:
            if kind in found and kind in expected:
                counts[kind]["tp"] += 1
            elif kind in found:
                counts[kind]["fp"] += 1
                errors.append(f"false alarm {kind}: {case['text']!r}")
            elif kind in expected:
                counts[kind]["fn"] += 1
                errors.append(f"missed {kind}: {case['text']!r}")
    elapsed = time.perf_counter() - started
    total = {key: sum(c[key] for c in counts.values()) for key in ("tp", "fp", "fn")}
    rows = {**counts, "all": total}
    for row in rows.values():
        row["precision"] = row["tp"] / (row["tp"] + row["fp"]) if row["tp"] + row["fp"] else 1.0
        row["recall"] = row["tp"] / (row["tp"] + row["fn"]) if row["tp"] + row["fn"] else 1.0
    negatives = sum(1 for c in cases if not c["labels"])
    return {
        "cases": len(cases),
        "negatives": negatives,
        "rows": rows,
        "errors": errors,
        "us_per_scan": elapsed / len(cases) * 1e6,
    }


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--errors", action="store_true", help="list every miss and false alarm")
    args = parser.parse_args()
    cases = load()
    for title, subset in (
        ("whole corpus", cases),
        ("held-out round 1 (since used to tune the detectors)", [c for c in cases if c.get("held_out") == 1]),
        ("held-out round 2 (written after the last detector change)", [c for c in cases if c.get("held_out") == 2]),
    ):
        result = evaluate(subset)
        print(
            f"\n{title}: {result['cases']} cases ({result['negatives']} negatives); "
            f"{result['us_per_scan']:.0f} us per scan"
        )
        print(f"{'kind':<12} {'tp':>4} {'fp':>4} {'fn':>4} {'precision':>10} {'recall':>8}")
        for kind, row in result["rows"].items():
            print(
                f"{kind:<12} {row['tp']:>4} {row['fp']:>4} {row['fn']:>4} {row['precision']:>10.3f} "
                f"{row['recall']:>8.3f}"
            )
        if args.errors:
            print("\n".join(result["errors"]))


if __name__ == "__main__":
    main()
