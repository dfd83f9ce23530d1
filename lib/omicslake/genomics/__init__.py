"""Genomics: VCF ingest, QC, genetic features and GWAS with Hail."""
