"""Tests of the storage edge."""
