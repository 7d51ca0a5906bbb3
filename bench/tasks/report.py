"""`task=report`: tables and plots of a profile (`profile=<name>`) or of raw results
(`results=<dir or glob>`, fitted in memory), written to `report_dir` and printed."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common.files import atomic_write_text
from bench.profile import plots, report, store
from bench.profile.build import build, gather
from bench.tasks.fit import default_name

if TYPE_CHECKING:
    from bench.cli.schema import BenchConf


def run(cfg: "BenchConf") -> dict[str, Any]:
    if cfg.profile:
        profile = store.load(cfg.profile, cfg.profiles_dir)
    else:
        points = gather(cfg.results or cfg.results_dir)
        profile = build(points, cfg.hardware or default_name(points), source=str(cfg.results or cfg.results_dir))
    out = Path(cfg.report_dir or Path(cfg.results_dir) / "report")
    out.mkdir(parents=True, exist_ok=True)
    pngs = plots.render(profile, out)
    text = report.markdown(profile, [p.name for p in pngs])
    atomic_write_text(out / f"{profile.name}.md", text)
    print(text)
    print(f"wrote {out / (profile.name + '.md')} and {len(pngs)} plots")
    return {"report": str(out / f"{profile.name}.md")}
