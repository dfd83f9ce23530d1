"""omicslake: genomic and clinical data into Delta Lake layers and MLflow-tracked models."""

__version__ = "0.1.0"
