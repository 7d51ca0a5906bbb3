"""From an LLM architecture and a device model to serving: one step's cost (`step.py`), model
specs (`models.py`), device models from profiles or datasheets (`device.py`), the
continuous-batching simulation (`simulate.py`; its SLO and results in `result.py`) and a
replica's capacity within the SLO (`capacity.py`)."""
from __future__ import annotations

from bench.carbon.serving.composed import StepParts
from bench.carbon.serving.device import (DECODE_POWER_SHARE, DeviceModel, allreduce_method, allreduce_table, datasheet,
                                        from_parts, from_profile)
from bench.carbon.serving.models import CHOICES as MODEL_CHOICES
from bench.carbon.serving.models import PRESETS, ModelSpec, preset, preset_key
from bench.carbon.serving.step import StepCost

__all__ = ["DECODE_POWER_SHARE", "DeviceModel", "MODEL_CHOICES", "ModelSpec", "PRESETS", "StepCost", "StepParts",
           "allreduce_method", "allreduce_table",
           "datasheet", "from_parts", "from_profile", "preset", "preset_key"]
