"""The model wing: loading a model, scoring a dataset with it, and what is learned from the scores.

``triage.triage`` is the entry point (score -> label issues -> metrics -> sanity -> embedding findings -> save).
Beside it: ``models`` (loading), ``preprocess``, ``runtime`` (device settings), ``pipeline`` (the batch pipeline),
``gpu_decode``, ``cache`` (the score cache), ``predictions`` (predictions files), ``table`` (the scores table),
``metrics``, ``label_issues``, ``probe``, ``sanity``, ``knn``, and ``tasks`` (one module per model task).
"""
