"""Hub cards rendered from the top-level Jinja templates with computed numbers (never typed by hand)."""
