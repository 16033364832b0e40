"""Faults beyond HTTP: in-process calls (``functions:``): what each ready kind raises."""
