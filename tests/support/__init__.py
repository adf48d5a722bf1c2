"""Helpers shared by more than one test module: each is written once, here."""
