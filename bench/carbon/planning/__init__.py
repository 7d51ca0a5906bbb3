"""Planning: the MILP over the hours (`milp.py`), a long period by the fleet search (`fleets.py`) and
in blocks (`blocks.py`), which of them plans a period (`solver.py`), EcoServe's pillars as small objects
(`pillars.py`), the baselines (`baselines.py`), the run with its verification by simulation
(`run.py`) and the report (`report.py`); the options the config reads without loading the solver
(`options.py`) and the planner's refusal (`errors.py`)."""
