"""Stage 1, measure: the protocol for one point (`protocol.py`), the window monitor
(`monitor.py`), clocks, the device lock, meters (`meters/`, one file each), the results store
(the only writer of results), the environment, and `session.py`, which runs them around a closure.
"""
