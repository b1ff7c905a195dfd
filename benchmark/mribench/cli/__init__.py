"""The command line: `main.py` builds the parser and maps errors to exit codes; one module per
command group (run.py: suite, tune, report; data.py; models.py; perf.py) adds its sub-commands.

Nothing here imports a heavy library: each command imports what it needs when it runs.
"""
