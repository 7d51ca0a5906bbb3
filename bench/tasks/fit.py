"""`task=fit`: gather measured points, fit the profile curves, write the profile table."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.console import Console

from bench.profile import store
from bench.profile.build import Profile, ProfileError, build, gather, slug
from bench.profile.report import fit_rows

if TYPE_CHECKING:
    from bench.cli.schema import BenchConf

log = logging.getLogger(__name__)


def default_name(points: pd.DataFrame) -> str:
    """The hardware the points were measured on, as a file name (e.g. `nvidia-h100-80gb-hbm3`)."""
    names = points.get("env_device_name", pd.Series(dtype=str)).dropna().astype(str).unique()
    if len(names) != 1:
        raise ProfileError(f"points come from {len(names)} devices ({list(names)}); "
                                    "fit one device at a time or name it with hardware=<name>")
    return slug(names[0])


def fit_and_write(pattern: str, hardware: str | None, out_dir: str | Path) -> Profile:
    points = gather(pattern)
    profile = build(points, hardware or default_name(points), source=str(pattern))
    paths = store.write(profile, out_dir)
    print_summary(profile, paths)
    return profile


def print_summary(profile: Profile, paths: list[Path]) -> None:
    console = Console(width=max(Console().width, 200))
    m = profile.meta
    console.print(f"[bold]profile {profile.name}[/bold]: {m['points_used']} points used, dropped by quality: "
                  f"{m['points_dropped'] or 'none'}; device energy: {', '.join(m['energy_methods'])}", highlight=False)
    fits = fit_rows(profile.fits)
    for row in fits.to_dict("records"):
        console.print(f"  {row['fit']:16} {row['group']:44} R2={row['R2']:.3f} CV error={row['CV error rms']:.1%} "
                      f"{row['quality']:5} {row['coefficients [95% CI]']}", highlight=False)
    for path in m.get("points_unreadable", []):
        console.print(f"  skipped an unreadable point file (or csv row): {path}", highlight=False)
    for line in m["skipped_fits"]:
        console.print(f"  not fitted: {line}", highlight=False)
    for row in m.get("composition", []):
        console.print(f"  composition check {row['kernel']:18} {row['points']:3} points: time error rms "
                      f"{row['time rms']:.1%} worst {row['time worst']:.1%}; energy error rms {row['energy rms']:.1%} "
                      f"worst {row['energy worst']:.1%}; within target: {row[next(k for k in row if k.startswith('within'))]}",
                      highlight=False)
    for path in paths:
        console.print(f"  wrote {path}", highlight=False)


def run(cfg: "BenchConf") -> dict[str, Any]:
    profile = fit_and_write(cfg.results or cfg.results_dir, cfg.hardware, cfg.profiles_dir)
    return {"profile": profile.name, "points_used": profile.meta["points_used"]}
