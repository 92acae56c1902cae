"""Tests of models and their loading."""
