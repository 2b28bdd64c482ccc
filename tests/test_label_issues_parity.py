"""Confident learning edge cases: probabilities at the threshold, and exact ties when the calibrated joint
is rounded. Expected answers are worked out by hand from the rule in inspect_core/label_issues.py's docstring."""
from __future__ import annotations

import numpy as np

from inspect_core.label_issues import find_issues_confident_learning, round_calibrated_joint


def test_probability_at_threshold_after_float32_rounding_counts():
    # Given 1: p1 = 0.6 and 0.7 -> t1 = 0.65. Example x (given 0) has p1 = 0.65: exactly at the threshold, so
    # it is confidently class 1 and C = [[3, 1], [0, 1]]; row 0 keeps its total 4, cell (0, 1) prunes 1 example,
    # the one with the largest p1 - p0: x (the other given-0 rows have p1 = 0.1). Its argmax (1) differs from its
    # label, so x is flagged. Stored as float32, p1(x) = 0.64999998 and t1 = 0.65000001: a 1e-12 tolerance loses it.
    probs = np.array([[0.35, 0.65],                         # x
                      [0.9, 0.1], [0.9, 0.1], [0.9, 0.1],   # given 0, clearly class 0
                      [0.4, 0.6], [0.3, 0.7]], dtype=np.float32)
    labels = np.array([0, 0, 0, 0, 1, 1])
    cl = find_issues_confident_learning(probs, labels)
    assert cl.confident_joint.tolist() == [[3, 1], [0, 1]]
    assert np.flatnonzero(cl.issue_mask).tolist() == [0]
    assert cl.suggested[0] == 1


def test_rounding_tie_goes_to_the_cell_whose_next_example_is_least_likely_its_label():
    # Thresholds: t1 = t2 = 0.8 (given-1 / given-2 rows), t0 = (0.9 + 0.9 + 0.1 + 0.1 + 0.3 + 0.2) / 6 = 0.417.
    # Given-0 row of the confident joint: a, b -> class 0; c -> class 1 (0.85 >= 0.8); d -> class 2; e, f reach
    # no threshold. C[0] = [2, 1, 1], n0 = 6 -> calibrated [3, 1.5, 1.5]: one spare example, tied between (0, 1)
    # and (0, 2). Margin order for (0, 1): c, e, ...; for (0, 2): d, f, .... Floors prune c and d; the spare
    # goes to the cell whose next example is least likely class 0: f (p0 = 0.2) beats e (p0 = 0.3).
    # So c, d, f are flagged (all have argmax != 0). Breaking the tie by column index would flag e instead of f.
    given0 = [[0.9, 0.05, 0.05],   # a
              [0.9, 0.05, 0.05],   # b
              [0.1, 0.85, 0.05],   # c
              [0.1, 0.05, 0.85],   # d
              [0.3, 0.6, 0.1],     # e
              [0.2, 0.1, 0.7]]     # f
    probs = np.array(given0 + [[0.1, 0.8, 0.1]] * 4 + [[0.1, 0.1, 0.8]] * 4)
    labels = np.array([0] * 6 + [1] * 4 + [2] * 4)
    cl = find_issues_confident_learning(probs, labels)
    assert cl.confident_joint[0].tolist() == [2, 1, 1]
    assert np.flatnonzero(cl.issue_mask).tolist() == [2, 3, 5]
    assert cl.suggested[[2, 3, 5]].tolist() == [1, 2, 2]
    # mirror the two candidates: now e is the less likely class 0, so e is flagged and f is not
    probs[[4, 5]] = [[0.2, 0.7, 0.1], [0.3, 0.1, 0.6]]
    assert np.flatnonzero(find_issues_confident_learning(probs, labels).issue_mask).tolist() == [2, 3, 4]


def test_round_calibrated_joint_is_exact():
    # Row [83, 27, 24, 4] sums to 138 and is scaled to 324: remainders are 20/23, 9/23, 8/23, 9/23 of one unit
    # (83 * 324 = 194 * 138 + 120 and 120/138 = 20/23; 27 * 324 = 63 * 138 + 54; 24 * 324 = 56 * 138 + 48;
    # 4 * 324 = 9 * 138 + 54). Floors sum to 322, so two spare units: column 0, then the exact tie between
    # columns 1 and 3 (float arithmetic puts column 3 a few ulps ahead). No key: lower column wins.
    row = np.array([[83, 27, 24, 4]])
    assert round_calibrated_joint(row, np.array([324])).tolist() == [[195, 64, 56, 9]]
    key = np.array([[0.0, 0.0, 0.0, 1.0]])
    assert round_calibrated_joint(row, np.array([324]), key).tolist() == [[195, 63, 56, 10]]
    # rows sum to the class counts; a row with no confident examples stays zero
    joint = np.array([[336, 14, 4, 14], [0, 0, 0, 0]])
    out = round_calibrated_joint(joint, np.array([560, 7]))
    assert out.sum(axis=1).tolist() == [560, 0] and out[0].tolist() == [512, 21, 6, 21]


def test_threshold_tolerance_is_relative_so_a_never_predicted_class_is_not_cleared_by_everyone():
    # Class 2 is (almost) never predicted: its given-2 examples have p2 = 1e-7, so t2 = 1e-7; t0 = t1 = 0.85.
    # The second given-0 row (p0 = 0.8) and the first given-1 row (p1 = 0.8) reach no threshold of their own.
    # With an absolute tolerance of 1e-6 their p2 = 0 would count as "at" t2 = 1e-7 and put them in column 2
    # (C = [[1, 0, 1], [0, 1, 1], [0, 0, 2]]); relative to t2, p2 = 0 does not reach it:
    # C = [[1, 0, 0], [0, 1, 0], [0, 0, 2]].
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.2, 0.8, 0.0], [0.1, 0.9, 0.0],
                      [0.6, 0.4 - 1e-7, 1e-7], [0.4, 0.6 - 1e-7, 1e-7]])
    labels = np.array([0, 0, 1, 1, 2, 2])
    cl = find_issues_confident_learning(probs, labels)
    assert cl.thresholds[2] == 1e-7
    assert cl.confident_joint.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 2]]
