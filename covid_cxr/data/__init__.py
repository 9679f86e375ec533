"""From image files to a Hugging Face dataset, and from the dataset to model inputs.

imaging (PNG/JPEG/DICOM in, 8-bit PIL out) -> records (one per image, any input layout) -> dedup and splits
(by patient) -> build (the DatasetDict, its report) and stats (the card's figures) -> predecode and transforms
(what the Trainer and the model see).
"""
