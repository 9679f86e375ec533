"""Scoring many films: the listing, the batched, resumable engine under `accelerate launch`, the rows kept."""
