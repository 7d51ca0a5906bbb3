"""Hydra's and OmegaConf's input errors in one line naming the field and what it takes:
`invalid batch_size='1.5': must be an integer`, `invalid offload='gpu': choose one of cpu, none,
split, stream`, `unknown setting foo`."""
from __future__ import annotations

import re

from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

# OmegaConf's names of the types it converts to, as a user reads them.
_TYPES = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string",
          "int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}


class PointFailed(Exception):
    """One point of a sweep could not be measured (its refusal line was printed); the sweep goes on
    and lists every failed point at the end (exit 3)."""


def is_hydra_input_error(err: BaseException) -> bool:
    return isinstance(err, (ConfigCompositionException, MissingConfigException, OverrideParseException,
                            OmegaConfBaseException))


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def hydra_error_line(err: BaseException) -> str:
    """The one line (without the `bench: ` prefix) for an input error."""
    if isinstance(err, MissingConfigException):
        group, _, option = (err.missing_cfg_file or "").rpartition("/")
        if group and err.options:
            return f"invalid {group.replace('/', '.')}={option!r}: choose one of {', '.join(sorted(err.options))}"
        return " ".join(str(err).split())
    if isinstance(err, OverrideParseException):
        return f"cannot parse the override: {' '.join(str(err).split())}"
    cause = _root_cause(err)
    text = " ".join(str(cause).split())
    key = getattr(cause, "full_key", None)
    if isinstance(cause, OmegaConfBaseException) and key:
        converted = (re.search(r"Value '(.*?)' of type '\w+' could not be converted to (\w+)", text)
                     or re.search(r"Value '(.*?)' is not a valid (\w+)", text))
        if converted:
            return f"invalid {key}={converted.group(1)!r}: must be {_TYPES.get(converted.group(2), converted.group(2))}"
        if "not in struct" in text or "Key '" in text and "not in" in text:
            return f"unknown setting {key}: it is not in the schema (see the README's overrides table)"
        invalid = re.search(r"Invalid value '(.*?)', expected one of \[(.*?)\]", text)
        if invalid:
            return f"invalid {key}={invalid.group(1)!r}: choose one of {invalid.group(2)}"
        return f"invalid {key}: {text.split(' full_key:')[0]}"
    missing_key = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' is not in struct", text)
    if missing_key:
        return f"unknown setting {missing_key.group(1)}: it is not in the schema (see the README's overrides table)"
    return text.split(" full_key:")[0]
