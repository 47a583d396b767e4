"""`zpeft data validate`: every problem in one survey file or a whole dataset pair, [] when it is good.

The checks themselves live in `checks` (shared with the readers); this module finds the
files of a pair through the registry, so the import graph has no cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zpeft.data.checks import BANDS, Problem, check_disjoint, check_same_split_across_sets
from zpeft.data.registry import FileSource, is_pair, pair_sources, source_format


def validate_file(path: str | Path, label_key: str | None = None, *, bands: Sequence[str] = BANDS,
                  catalogue: str | Path | None = None, id_key: str = "object_id") -> list[Problem]:
    """Every problem in one HDF5 file, FITS cube or directory of FITS cutouts; [] when it is good.

    Without `label_key`, the first of the usual label columns present is checked.
    """
    path = Path(path)
    if not path.exists():
        return [Problem(str(path), None, "does not exist")]
    try:
        fmt = source_format(path)
    except ValueError as err:
        return [Problem(str(path), None, str(err))]
    source = FileSource(path, label_key, fmt, catalogue=None if catalogue is None else Path(catalogue),
                        id_key=id_key, bands=tuple(bands))
    return source.scan(mode="check").problems


def validate_path(path: str | Path) -> list[Problem]:
    """Every problem in a dataset pair (manifest dir or description file) or a single file."""
    path = Path(path)
    if not is_pair(path):
        return validate_file(path)
    try:
        _, _, sources = pair_sources(path)
    except (ValueError, KeyError, OSError) as err:
        return [Problem(str(path), None, str(err))]
    problems: list[Problem] = []
    ids_by_kind = {}
    for kind, splits in sources.items():
        ids = ids_by_kind[kind] = {}
        for split, source in splits.items():
            scan = source.scan(mode="check")
            problems += scan.problems
            if scan.ids is not None and not scan.ids_from_rows:
                ids[split] = (scan.file, scan.ids)
        problems += check_disjoint(kind, ids)
    return problems + check_same_split_across_sets(ids_by_kind)
