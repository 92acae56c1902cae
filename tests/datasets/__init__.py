"""Tests of real labelled sets."""
