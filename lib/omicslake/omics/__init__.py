"""Omics matrices other than genotypes: readers for the formats labs deliver (``readers``), QC and
normalisation per assay type (``normalise``) and per-feature association (``assoc``).

Every assay is stored like the genotypes: one row per feature, its values an array in the order of
a samples table.
"""
