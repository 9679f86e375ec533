"""`python -m covid_cxr.cli COMMAND ...`, the same as the `covid-cxr` command."""

from covid_cxr.cli import main

main()
