"""Run a suite: each test's slice, metric with its interval, threshold, baseline, and status PASS / WARN / FAIL.

The decision (``decide_on``):
- ``value`` (default): the metric's value against min / max;
- ``interval``: FAIL only when the whole interval lies on the wrong side of the threshold; a value on the wrong
  side with the interval reaching over it is WARN (inconclusive): a small slice does not fail by chance;
- ``strict``: PASS only when the whole interval lies on the right side; otherwise FAIL.
``max_drop`` compares the value with the baseline's value on the same slice (a drop is a fall of a
higher-is-better metric or a rise of a lower-is-better one). A slice with fewer counted images than
``min_support`` is WARN whatever its value (a finding count, exact, is decided anyway); a test of severity
``warn`` reports WARN instead of FAIL.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import metrics as M
from .slices import SliceData, SliceError, SliceEvaluator
from .spec import ALL_SLICE, Suite, TestDef

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
RESULT_COLUMNS = ["test", "slice", "metric", "n", "value", "low", "high", "interval", "threshold", "baseline",
                  "status", "reason", "severity", "line"]


@dataclass
class SuiteRun:
    results: pd.DataFrame          # RESULT_COLUMNS, one row per test, in the file's order
    masks: dict                    # slice name -> boolean mask over the images

    @property
    def n_fail(self) -> int:
        return int((self.results["status"] == FAIL).sum())

    @property
    def n_warn(self) -> int:
        return int((self.results["status"] == WARN).sum())


def threshold_text(t: TestDef) -> str:
    parts = []
    if t.min is not None:
        parts.append(f">= {t.min:g}")
    if t.max is not None:
        parts.append(f"<= {t.max:g}")
    if t.max_drop is not None:
        parts.append(f"drop <= {t.max_drop:g}")
    return ", ".join(parts)


def metric_name(t: TestDef) -> str:
    p = t.params
    extra = ", ".join(f"{k}={p[k]}" for k in ("class", "k", "check", "bins") if k in p)
    return f"{t.metric}({extra})" if extra else t.metric


def compute(t: TestDef, mask: np.ndarray, data: SliceData, scores: M.ScoreArrays | None, defaults: dict,
            whole: bool, detections=None) -> M.MetricValue:
    from .det_metrics import DETECTION_METRICS, detection_metric
    if t.metric in M.DATA_METRICS:
        return M.DATA_METRICS[t.metric](data, mask, t.params, defaults, whole)
    if t.metric in DETECTION_METRICS:
        if detections is None:
            raise M.MetricError(f"{t.metric} is a detection metric: give a detector's boxes (--detections FILE, or "
                                "--model with a detector sidecar)")
        return detection_metric(t.metric, detections, data.images["image_id"], mask, t.params, defaults)
    if scores is None and detections is not None:
        raise M.MetricError(f"{t.metric} is a classification metric; this run has a detector's boxes: use a "
                            "detection metric (" + ", ".join(DETECTION_METRICS) + ")")
    if scores is None:
        raise M.MetricError("no scores: give a model (--model) or a predictions file (--predictions)")
    return M.MODEL_METRICS[t.metric](scores, mask, t.params, defaults)


def _side(value: float, t: TestDef) -> bool:
    ok = True
    if t.min is not None:
        ok &= value >= t.min
    if t.max is not None:
        ok &= value <= t.max
    return bool(ok)


def decide(t: TestDef, mv: M.MetricValue, baseline: M.MetricValue | None, min_support: int) -> tuple[str, str]:
    """(status before severity, reason)."""
    if mv.n == 0 or math.isnan(mv.value):
        return WARN, "no counted images in the slice"
    if mv.n < min_support and mv.interval != "exact count":       # a count of findings is no estimate
        return WARN, f"only {mv.n} images counted, below min_support {min_support}: not decided"
    reasons = []
    status = PASS
    if t.min is not None or t.max is not None:
        good_value = _side(mv.value, t)
        lo, hi = mv.low, mv.high
        if math.isnan(lo) or math.isnan(hi):
            lo = hi = mv.value
        # some value of the interval passes (it overlaps the allowed range) / every value passes
        best_ok = (t.min is None or hi >= t.min) and (t.max is None or lo <= t.max)
        worst_ok = (t.min is None or lo >= t.min) and (t.max is None or hi <= t.max)
        if t.decide_on == "value":
            if not good_value:
                status = FAIL
                reasons.append(f"value {mv.value:.4g} outside {threshold_text(t)}")
        elif t.decide_on == "interval":
            if not best_ok:
                status = FAIL
                reasons.append(f"the whole interval [{mv.low:.4g}, {mv.high:.4g}] misses {threshold_text(t)}")
            elif not good_value:
                status = WARN
                reasons.append(f"value {mv.value:.4g} misses {threshold_text(t)} but the interval reaches it: "
                               "inconclusive")
        else:   # strict
            if not worst_ok:
                status = FAIL
                reasons.append(f"the interval [{mv.low:.4g}, {mv.high:.4g}] is not wholly within {threshold_text(t)}")
    if t.max_drop is not None:
        if baseline is None:
            status = WARN if status == PASS else status
            reasons.append("max_drop needs a baseline (--baseline): not checked")
        elif baseline.n == 0 or math.isnan(baseline.value):
            status = WARN if status == PASS else status
            reasons.append("the baseline counts no images in this slice: max_drop not checked")
        else:
            drop = (baseline.value - mv.value) if t.higher_is_better else (mv.value - baseline.value)
            if drop > t.max_drop + 1e-12:
                status = FAIL
                reasons.append(f"dropped {drop:.4g} from the baseline's {baseline.value:.4g} (max_drop "
                               f"{t.max_drop:g})")
    return status, "; ".join(reasons)


def slice_data(images: pd.DataFrame, score_columns: pd.DataFrame | None, findings: pd.DataFrame | None,
               decisions: pd.DataFrame | None, suite: Suite) -> SliceData:
    return SliceData(images=images, scores=score_columns, findings=findings, decisions=decisions,
                     folder=suite.folder)


def run_suite(suite: Suite, data: SliceData, scores: M.ScoreArrays | None = None,
              baseline: M.ScoreArrays | None = None, baseline_columns: pd.DataFrame | None = None,
              detections=None) -> SuiteRun:
    """Every test of ``suite`` on ``data`` (and the model's ``scores``; ``baseline``: a previous model's, for
    max_drop; ``detections``: a detector's boxes, ``det_metrics.DetectionData``, for the detection metrics).
    Slices that name score columns are evaluated on the current model's for the current run and on the
    baseline's for the baseline."""
    ev = SliceEvaluator(suite, data)
    base_ev = None
    if baseline is not None:
        base_data = SliceData(images=data.images, scores=baseline_columns, findings=data.findings,
                              decisions=data.decisions, folder=data.folder)
        base_ev = SliceEvaluator(suite, base_data)
    d = suite.defaults
    rows = []
    for t in suite.tests:
        support = t.min_support if t.min_support is not None else int(d["min_support"])
        row = {"test": t.name, "slice": t.slice, "metric": metric_name(t), "n": 0, "value": math.nan,
               "low": math.nan, "high": math.nan, "interval": "", "threshold": threshold_text(t),
               "baseline": math.nan, "severity": t.severity, "line": t.line}
        try:
            mask = ev.mask(t.slice)
            mv = compute(t, mask, data, scores, d, t.slice == ALL_SLICE, detections)
            bv = None
            if base_ev is not None and t.metric in M.MODEL_METRICS:
                bv = compute(t, base_ev.mask(t.slice), data, baseline, d, t.slice == ALL_SLICE)
            elif base_ev is not None and t.metric in M.DATA_METRICS:
                bv = mv                                # data metrics do not depend on the model
            status, reason = decide(t, mv, bv, support)
            row.update(n=mv.n, value=mv.value, low=mv.low, high=mv.high, interval=mv.interval,
                       baseline=bv.value if bv is not None else math.nan)
        except (SliceError, M.MetricError) as exc:
            status, reason = FAIL, str(exc)
        if status == FAIL and t.severity == "warn":
            status, reason = WARN, reason + " (severity warn)"
        row.update(status=status, reason=reason)
        rows.append(row)
    return SuiteRun(results=pd.DataFrame(rows, columns=RESULT_COLUMNS), masks=dict(ev._cache))


def slice_rows(images: pd.DataFrame, mask: np.ndarray, score_columns: pd.DataFrame | None) -> pd.DataFrame:
    """The slice's images with their score columns, worst loss first (then image_id)."""
    rows = images.loc[mask, [c for c in ("image_id", "label", "split") if c in images.columns]].copy()
    if score_columns is not None:
        for c in score_columns.columns:
            rows[c] = score_columns.loc[mask, c].to_numpy()
    if "loss" in rows.columns:
        rows = rows.sort_values(["loss", "image_id"], ascending=[False, True], na_position="last", kind="stable")
    return rows.reset_index(drop=True)


@dataclass
class Evaluation:
    """What a suite runs on for one scan: its images, findings and review decisions, and the model's (and a
    baseline's) scores aligned with the images. Built once by ``evaluation``; the CLI, the page and the bench
    call it."""
    data: SliceData
    scores: M.ScoreArrays | None = None
    score_columns: pd.DataFrame | None = None
    baseline: M.ScoreArrays | None = None
    baseline_columns: pd.DataFrame | None = None
    detections: object = None      # det_metrics.DetectionData: a detector's boxes for the detection metrics

    def run(self, suite: Suite) -> SuiteRun:
        data = SliceData(images=self.data.images, scores=self.score_columns, findings=self.data.findings,
                         decisions=self.data.decisions, folder=suite.folder)
        return run_suite(suite, data, self.scores, self.baseline, self.baseline_columns, self.detections)


def evaluation(images: pd.DataFrame, findings: pd.DataFrame | None = None, decisions: pd.DataFrame | None = None,
               result=None, baseline_result=None, detection_result=None) -> Evaluation:
    """An ``Evaluation`` from a scan's tables and ``model.table.ScoreResult``s (either may be None), and a
    ``DetectionResult`` (a detector's boxes: the detection metrics)."""
    from .det_metrics import DetectionData
    from .scores import arrays_of
    ev = Evaluation(data=SliceData(images=images, findings=findings, decisions=decisions),
                    detections=DetectionData.of(detection_result) if detection_result is not None else None)
    if result is not None:
        ev.scores, ev.score_columns = arrays_of(result, images)
    if baseline_result is not None:
        ev.baseline, ev.baseline_columns = arrays_of(baseline_result, images)
    return ev
