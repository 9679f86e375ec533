"""covid-cxr Gradio Space: upload a frontal chest X-ray (PNG, JPEG or DICOM), get a calibrated COVID-19
probability, the decision at the model's stored threshold and a Grad-CAM heat map. Research use only.

    MODEL=build/model PORT=7860 python space/app.py        # or: make space
"""

from pathlib import Path

from covid_cxr.serving.app import main

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    main(HERE, build_dir=HERE.parent / "build")  # in a checkout: what `make train` and `make lungs` wrote
