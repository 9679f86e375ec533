"""The page generators: every generated README block and docs/ artefact, rendered from a committed JSON artefact.

Nothing here measures or trains; bench/ and study/ measure, covid_cxr is the product.
"""
