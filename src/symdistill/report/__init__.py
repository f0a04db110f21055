"""Report: figures, tables and pages for runs."""
