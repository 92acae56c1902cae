"""Tests of the paper's methods."""
