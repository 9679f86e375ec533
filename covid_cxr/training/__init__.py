"""Fine-tuning with the transformers Trainer, then calibration, evaluation, artefacts, the card and the push."""
