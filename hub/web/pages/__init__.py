"""The operator pages, one module per subject."""
