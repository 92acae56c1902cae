"""Tests of Prefect tasks."""
