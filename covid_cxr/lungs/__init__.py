"""Lung fields: a segmenter on frozen DINOv2 patch tokens, the measures built on its masks, and a command that
writes masks for a folder (``python -m covid_cxr.lungs --help``).

segmenter (the model, safetensors + config.json) -> fitting (training and patient-grouped cross-validation on the
lung masks) -> measures (Dice, IoU, connected components, the share of a heat map inside the lungs).
"""
