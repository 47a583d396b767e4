"""Entry point behind `zpeft data simulate`: the CLI parses arguments and calls `main_simulate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.simsurvey.simulate import simulate


def main_simulate(preset: str, out: str | Path | None, seed: int = 0, label_model: str = "deep",
                  workers: int | None = None) -> int:
    """Write (or find in the cache) a simulated pair and print where; exit status 0, or 2 on bad input."""
    try:
        path = simulate(preset, out, seed=seed, label_model=label_model, workers=workers, progress=True)
    except (KeyError, ValueError, FileExistsError) as err:
        print(f"zpeft data simulate: {err}", file=sys.stderr)
        return 2
    manifest = json.loads((path / "manifest.json").read_text())
    counts = manifest["counts"]
    print(f"{path}\n  photo-z: {counts['photo']}\n  spec-z:  {counts['spec']}\n"
          f"  label model: {label_model}, seed {seed}")
    return 0
