"""What a plan is computed from: grid intensity (`grid/`, one module per source behind one
registry), request traces (`workload.py`) and the embodied-carbon catalogue (`embodied.py`)."""
