"""Past one machine (issue 15): the per-file read of a scan on a Ray cluster (``engine``), the global duplicate
steps in a form that runs per hash partition and per band (``dups``), scoring on a cluster (``score``), the
mergeable statistics (``sketch``), and the global steps of a cluster scan wired into its checks (``steps``).

Nothing here imports Ray at import time: Ray is imported only when a cluster is asked for (``scan(...,
cluster=...)``, ``dataset-inspector scan|score ROOT --cluster ...``), so the default local path never loads it.
"""
