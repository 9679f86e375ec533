"""Lung fields: a segmenter on frozen DINOv2 patch tokens, its training, and the measures built on its masks.

segmenter (the model, safetensors + lung_segmenter.json) -> fitting (a head's training and patient-grouped
cross-validation on the lung masks) -> training (what `covid-cxr train-lungs` runs: both models fitted, measured and
saved) -> standard (the same segmenter as a transformers UperNet, for pipeline("image-segmentation")) -> measures
(Dice, IoU, connected components, implausible masks, the share of a heat map inside the lungs) -> attention (that
share for a classifier's Grad-CAM), masks (a folder's masks, as `covid-cxr lungs` writes them) and dataset_masks
(masks of a dataset split, cached beside it, for the studies' probes); the lungs-first model holds the same
segmenter (covid_cxr.modeling.lungs_first).
"""
