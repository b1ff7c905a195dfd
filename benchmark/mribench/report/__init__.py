"""Reports: reading a suite's runs into tables (summary.py, tables.py), figures of the suite
(figures.py) and of one run (run_figures.py), and the HTML/Markdown folder (files.py, html.py)."""
