"""Running suites: parse a suite, plan its runs, execute each run cell, and keep records on disk.

Importing the package imports nothing heavy; `suite`, `plan`, `layout` and `records` are torch-free.
"""
