"""Profiles on disk: `<name>.csv` (one row per case and shape, measured and fitted values),
`<name>.json` (fit coefficients, intervals, errors, what was dropped), `<name>.md` (tables), PNG
plots, and where layer cases were measured `<name>_composition.{csv,md}` (the composition check); `load(name)` reads one back (the carbon planner's device models come from here)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.common.files import atomic_write_text, read_json_object
from bench.profile import report
from bench.profile.build import Profile, ProfileError

PROFILES_DIR = Path(__file__).resolve().parents[2] / "profiles"


def write(profile: Profile, out_dir: Path | str) -> list[Path]:
    """Write `<name>.csv|.json|.md` and the plots; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    base = out / profile.name
    atomic_write_text(base.with_suffix(".csv"), profile.table.to_csv(index=False))
    atomic_write_text(base.with_suffix(".json"), json.dumps({"meta": profile.meta, "fits": profile.fits_dict()},
                                                            indent=1, default=_json_default) + "\n")
    from bench.profile import plots  # matplotlib, only where a profile is written

    pngs = plots.render(profile, out)
    atomic_write_text(base.with_suffix(".md"), report.markdown(profile, [p.name for p in pngs]))
    paths = [base.with_suffix(s) for s in (".csv", ".json", ".md")]
    if profile.composition is not None and not profile.composition.empty:
        stem = out / f"{profile.name}_composition"
        atomic_write_text(stem.with_suffix(".csv"), profile.composition.to_csv(index=False))
        atomic_write_text(stem.with_suffix(".md"), report.composition_markdown(profile))
        paths += [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    return paths + pngs


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def for_device(match: str, root: Path | str = PROFILES_DIR) -> "Profile | None":
    """The newest measured profile whose device name contains `match` (e.g. "H100"), if any."""
    found = []
    for name in available(root):
        meta = _profile_json(Path(root) / f"{name}.json")["meta"]
        pattern = re.compile(rf"\b{re.escape(match)}\b", re.IGNORECASE)  # L4 must not match L40S
        if any(pattern.search(str(d)) for d in meta.get("device_names", [])):
            found.append((max(meta.get("dates") or [""]), name))
    return load(max(found)[1], root) if found else None


def available(root: Path | str = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(root).glob("*.json"))


def load(name: str, root: Path | str = PROFILES_DIR) -> Profile:
    """A written profile by name (`profiles/<name>.csv` + `.json`)."""
    base = Path(root) / name
    if not base.with_suffix(".json").exists():
        raise ProfileError(f"no profile {name!r} in {root}; available: {available(root) or 'none'}. "
                           f"Measure one (python -m bench -m sweep=default) and fit it (python -m bench task=fit)")
    data = _profile_json(base.with_suffix(".json"))
    composition = Path(root) / f"{name}_composition.csv"
    try:
        table = pd.read_csv(base.with_suffix(".csv"))
        parts = pd.read_csv(composition) if composition.exists() else None
    except (OSError, ValueError) as err:  # missing, empty or cut-off tables (pandas' parse errors are ValueErrors)
        raise ProfileError(f"profile {name!r} in {root}: its tables are unreadable ({err}); fit it again "
                           "(python -m bench task=fit) or remove it") from None
    return Profile(name, table, data["fits"], data["meta"], parts)


def _profile_json(path: Path) -> dict[str, Any]:
    """A profile's JSON, or a ProfileError naming the file (cut off, hand-edited, not one of ours)."""
    data = read_json_object(path)
    if data is None or not isinstance(data.get("meta"), dict) or not isinstance(data.get("fits"), dict):
        raise ProfileError(f"{path} is not a readable profile (a JSON object with its meta and fits, as "
                           "task=fit writes it); fit it again (python -m bench task=fit) or remove it")
    return data
