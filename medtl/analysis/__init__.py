"""Analyses of transfer: feature reuse (SVCCA, CKA) and choosing the cut."""
