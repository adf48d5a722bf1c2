"""Tests of stacks/components/, one module per component."""
