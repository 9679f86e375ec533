"""`python -m covid_cxr COMMAND ...`: the `covid-cxr` command, for an environment whose scripts are not on PATH."""

from covid_cxr.cli import main

if __name__ == "__main__":
    main()
