"""zpeft harness: data, training, metrics, runs, records and reports."""

__version__ = "0.1.0"
