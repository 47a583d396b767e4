"""zpeft: a benchmark of parameter-efficient fine-tuning for galaxy redshift regression.

The package is a set of rooms by job: `cli` (commands), `run` (suites, plans, the run cell,
records), `training`, `report`, `perf`, `data`, `simsurvey`, and the plugin registries
`strategies` and `backbones`. Importing `zpeft` imports nothing heavy.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zpeft")
except PackageNotFoundError:  # pragma: no cover (running from a checkout that was never installed)
    __version__ = "0+unknown"
