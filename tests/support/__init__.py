"""Helpers shared by more than one test module: each is written once, here."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
