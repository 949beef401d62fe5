"""One module per landmark result: `python -m experiments.NAME`."""
