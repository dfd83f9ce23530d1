"""Synthetic cohort generator: EHR (Synthea CSV, FHIR NDJSON) and genomes (VCF) with planted truth."""
