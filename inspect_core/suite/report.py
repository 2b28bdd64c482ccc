"""A suite's results as a text table (terminal), JUnit XML (CI systems) and Markdown (a pull-request comment).
Computing is elsewhere (runner); these only format its results table."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pandas as pd


def _num(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _interval(row) -> str:
    if math.isnan(row["low"]) or math.isnan(row["high"]):
        return "-"
    return f"[{row['low']:.3g}, {row['high']:.3g}]"


def display_frame(results: pd.DataFrame, with_baseline: bool | None = None) -> pd.DataFrame:
    """The columns a person reads: test, slice, n, value, interval, threshold, (baseline,) status, reason."""
    if with_baseline is None:
        with_baseline = bool(results["baseline"].notna().any()) if len(results) else False
    out = pd.DataFrame({
        "test": results["test"], "slice": results["slice"], "metric": results["metric"], "n": results["n"],
        "value": [_num(v) for v in results["value"]],
        "interval": [_interval(r) for _, r in results.iterrows()],
        "threshold": results["threshold"]})
    if with_baseline:
        out["baseline"] = [_num(v) for v in results["baseline"]]
    out["status"] = results["status"]
    out["reason"] = results["reason"]
    return out


def summary_line(results: pd.DataFrame) -> str:
    counts = results["status"].value_counts()
    return (f"{len(results)} tests: {int(counts.get('PASS', 0))} passed, {int(counts.get('WARN', 0))} warned, "
            f"{int(counts.get('FAIL', 0))} failed")


def text_table(results: pd.DataFrame, width: int = 48) -> str:
    frame = display_frame(results)
    frame = frame.drop(columns=["reason"])
    cols = list(frame.columns)
    cells = [[str(v) if len(str(v)) <= width else str(v)[:width - 3] + "..." for v in row]
             for row in frame.itertuples(index=False)]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    for _, row in results.iterrows():
        if row["status"] != "PASS" and row["reason"]:
            lines.append(f"{row['status']} {row['test']}: {row['reason']}")
    lines.append(summary_line(results))
    return "\n".join(lines)


def junit_xml(results: pd.DataFrame, suite_name: str = "model tests") -> bytes:
    """One <testcase> per test: FAIL is a <failure>, WARN a <skipped> with its reason (CI shows both)."""
    counts = results["status"].value_counts()
    root = ET.Element("testsuites", name=suite_name)
    ts = ET.SubElement(root, "testsuite", name=suite_name, tests=str(len(results)),
                       failures=str(int(counts.get("FAIL", 0))), errors="0",
                       skipped=str(int(counts.get("WARN", 0))))
    for _, row in results.iterrows():
        case = ET.SubElement(ts, "testcase", name=str(row["test"]), classname=f"slice.{row['slice']}")
        detail = (f"{row['metric']} on slice {row['slice']}: n={row['n']}, value={_num(row['value'])}, "
                  f"interval={_interval(row)}, threshold {row['threshold']}"
                  + (f", baseline={_num(row['baseline'])}" if not _isnan(row["baseline"]) else ""))
        if row["status"] == "FAIL":
            ET.SubElement(case, "failure", message=str(row["reason"]) or "failed").text = detail
        elif row["status"] == "WARN":
            ET.SubElement(case, "skipped", message=f"WARN: {row['reason']}")
        ET.SubElement(case, "system-out").text = detail
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _md(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(results: pd.DataFrame, title: str = "Model tests") -> str:
    frame = display_frame(results)
    mark = {"PASS": "PASS", "WARN": "WARN", "FAIL": "**FAIL**"}
    lines = [f"### {title}: {summary_line(results)}", ""]
    cols = list(frame.columns)
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in frame.itertuples(index=False):
        vals = [mark.get(v, v) if c == "status" else v for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(_md(v) for v in vals) + " |")
    return "\n".join(lines) + "\n"
