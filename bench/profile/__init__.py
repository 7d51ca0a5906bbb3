"""Stage 2, profile: fitting with error bars (`fit.py`, the `Fit` type), the efficiency curves
(`curves.py`), profiles built from measured points (`build.py`), written and loaded (`store.py`),
their markdown report and plots. Pure functions on dataframes."""
