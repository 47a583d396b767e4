"""Reports from records: tables, paired statistics, rendering (Markdown and HTML), plots and regression compare."""
