"""Tests of config/: one module per section, plus the loader and the generated reference."""
