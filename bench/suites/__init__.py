"""The built-in suites (`*.toml` beside this file), found by name by `zpeft.run.suite.find_suite`."""
