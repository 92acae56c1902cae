"""Tests of the toy world."""
