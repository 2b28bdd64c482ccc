"""Model unit tests: a test file of named slices and tests (metric + threshold), run against a scan and a model's
scores, reported as a table, JUnit XML and Markdown; model comparison and slice discovery.

One module per concern: ``spec`` (the file), ``slices``, ``metrics`` (with intervals), ``runner``, ``report``,
``compare``, ``discover``, and ``scores`` (the one place scores are obtained)."""
from .runner import FAIL, PASS, WARN, Evaluation, SuiteRun, evaluation, run_suite
from .spec import DEFAULTS, METRICS, Suite, SuiteError, load_suite, parse_suite

__all__ = [
           "DEFAULTS",
           "FAIL",
           "METRICS",
           "PASS",
           "WARN",
           "Evaluation",
           "Suite",
           "SuiteError",
           "SuiteRun",
           "evaluation",
           "load_suite",
           "parse_suite",
           "run_suite",
]
