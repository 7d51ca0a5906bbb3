"""Device models held against measured LLM servers: measurement files in the ML.ENERGY v3 format
(`measurements.py`), their runs replayed in the serving simulator (`replay.py`), the calibration of a
datasheet model's few physical parameters (`calibrate.py`), and the tables, plot and SLO choice that
compare them (`report.py`)."""
from __future__ import annotations
