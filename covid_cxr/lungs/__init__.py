"""Lung fields: a segmenter on frozen DINOv2 patch tokens, the measures built on its masks, and a command that
writes masks for a folder (``python -m covid_cxr.lungs --help``).

segmenter (the model, safetensors + config.json) -> fitting (training and patient-grouped cross-validation on the
lung masks) -> measures (Dice, IoU, connected components, implausible masks, the share of a heat map inside the
lungs) -> attention (that share for a classifier's Grad-CAM) and dataset_masks (masks of a dataset split, cached
beside it, for the studies' probes); the lungs-first model holds the same segmenter (covid_cxr.modeling.lungs_first).
"""
