"""covid-cxr: COVID-19 detection from chest X-rays with Hugging Face datasets, transformers and Gradio.

Importing the package registers its lungs-first model (covid_cxr.modeling.lungs_first) with the transformers Auto
classes, so `pipeline("image-classification", model=...)` loads one with no remote code.
"""

from transformers import AutoConfig, AutoModelForImageClassification

from covid_cxr.labels import CLASS_NAMES, ID2LABEL, LABEL2ID
from covid_cxr.modeling.lungs_first import MODEL_TYPE, LungsFirstConfig, LungsFirstForImageClassification

AutoConfig.register(MODEL_TYPE, LungsFirstConfig, exist_ok=True)
AutoModelForImageClassification.register(LungsFirstConfig, LungsFirstForImageClassification, exist_ok=True)

__version__ = "0.1.0"
__all__ = ["CLASS_NAMES", "ID2LABEL", "LABEL2ID", "LungsFirstConfig", "LungsFirstForImageClassification", "__version__"]
