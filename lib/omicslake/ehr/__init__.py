"""EHR transforms: raw files to bronze rows, bronze to OMOP-shaped, de-identified silver."""
