"""Flows of the kind users write, named by import path from the scenarios beside them."""
