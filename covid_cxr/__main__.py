"""`python -m covid_cxr COMMAND ...`: the `covid-cxr` command, for an environment whose scripts are not on PATH."""

from covid_cxr.cli import main

main()
