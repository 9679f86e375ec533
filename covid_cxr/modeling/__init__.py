"""The model: offline backbones, batch inference, calibration, Grad-CAM and the out-of-scope guard."""
