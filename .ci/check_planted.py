"""Every planted row of sample_data/PLANTED.csv (image_id, check) is found: the scan's rows in its findings.csv,
the `mislabeled` rows (found by model triage, not by the scan) in the score command's label_issues.csv, and the
rows of any further (image_id, check) tables given, such as the detection triage's detection_errors.csv.

    python .ci/check_planted.py sample_data/PLANTED.csv SCAN_OUT/findings.csv SCORE_OUT/label_issues.csv \
        [DET_OUT/detection_errors.csv ...]

Standard library only: it runs in the fresh venv that CI installs the package into. Exit 0 when all are found,
1 naming each one missed, 2 on bad arguments or a file that cannot be read."""
from __future__ import annotations

import csv
import sys

MODEL_CHECKS = {"mislabeled"}


def read_rows(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def missed_rows(planted: list[dict], findings: list[dict], label_issues: list[dict]) -> list[tuple[str, str]]:
    found = {(r["image_id"], r["check"]) for r in findings}
    found |= {(r["image_id"], check) for r in label_issues for check in MODEL_CHECKS}
    return sorted({(r["image_id"], r["check"]) for r in planted} - found)


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: check_planted.py PLANTED.csv findings.csv label_issues.csv [more_findings.csv ...]",
              file=sys.stderr)
        return 2
    try:
        planted, findings, label_issues, *more = (read_rows(a) for a in argv)
        missed = missed_rows(planted, findings + [r for rows in more for r in rows], label_issues)
    except (OSError, KeyError, csv.Error) as exc:
        print(f"check_planted: cannot read {exc}", file=sys.stderr)
        return 2
    for image_id, check in missed:
        print(f"missed: {check} on {image_id}", file=sys.stderr)
    print(f"{len(planted) - len(missed)} of {len(planted)} planted rows found")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
