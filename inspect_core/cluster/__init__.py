"""The scan past one machine (issue 15): the per-file read on a Ray cluster (``engine``) and the global duplicate
steps in a form that runs per hash partition and per band (``dups``).

Nothing here imports Ray at import time: Ray is imported only when a cluster is asked for (``scan(...,
cluster=...)``, ``dataset-inspector scan ROOT --cluster ...``), so the default local scan never loads it.
"""
