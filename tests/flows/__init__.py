"""Tests of flows and the CLI."""
