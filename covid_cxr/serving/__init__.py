"""Serving a trained model folder: the predictor, the Gradio UI, its examples and the Space bundle."""
