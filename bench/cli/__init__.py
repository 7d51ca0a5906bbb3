"""The CLI: the Hydra entry (`main.py`), the typed schema (`schema.py`) and its registration
(`store.py`), validation (`validate.py`), Hydra's input errors in one line (`errors.py`), sweeper
glue (`sweeper.py`) and callbacks. Only typed dataclasses go below this package."""
