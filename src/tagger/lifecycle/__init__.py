"""Segments after the run: the saved `segment_model`, `assign` (place new users), `stability`
(reruns with other seeds) and `drift` (shares over time, matching segments across runs)."""
