"""covid-cxr: COVID-19 detection from chest X-rays with Hugging Face datasets, transformers and Gradio."""

from covid_cxr.labels import CLASS_NAMES, ID2LABEL, LABEL2ID

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "ID2LABEL", "LABEL2ID", "__version__"]
