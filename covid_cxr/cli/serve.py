"""Serve a trained model as the Gradio Space on this machine (needs the `space` extra:
`pip install "covid-cxr[space]"`). Research use only.

    covid-cxr serve --model my-model                                  # http://127.0.0.1:7860
    covid-cxr serve --model my-org/covid-cxr --examples my-dataset --port 8080
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from covid_cxr.cli.parsing import parse_arguments


@dataclass
class ServeArguments:
    """The model, what goes with it, and where it listens."""

    model: str = field(metadata={"help": "A model folder (covid-cxr finetune) or a Hub model id (org/name)."})
    lung_segmenter: str | None = field(
        default=None,
        metadata={
            "help": "A lung segmenter folder (covid-cxr train-lungs), for a model that is not lungs first: lung "
            "outlines, attention shares, one more check. A lungs-first model finds the lungs itself."
        },
    )
    examples: str | None = field(
        default=None,
        metadata={
            "help": "A `covid-cxr build` dataset whose test split gives the example gallery (a few images, "
            "written beside it into <dataset>-examples/)."
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (0.0.0.0: every interface)."})
    port: int = field(default=7860, metadata={"help": "Port to listen on."})


def main(argv: Sequence[str] | None = None, prog: str = "covid-cxr serve") -> None:
    (args,) = parse_arguments((ServeArguments,), argv, prog=prog, description=__doc__)
    if importlib.util.find_spec("gradio") is None:
        sys.exit('error: serving needs Gradio: pip install "covid-cxr[space]"')
    from covid_cxr.serving import app

    # the Space reads its settings from the environment, as on Hugging Face Spaces
    settings = {"MODEL": args.model, "LUNGS": args.lung_segmenter, "DATASET": args.examples, "PORT": str(args.port)}
    os.environ.update({name: value for name, value in settings.items() if value})
    os.environ["GRADIO_SERVER_NAME"] = args.host
    app.main(Path(app.__file__).parent)  # no model, lungs or examples lie beside the package's app


if __name__ == "__main__":
    main()
