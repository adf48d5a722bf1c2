"""Operations CLI for a deployed cluster: `python -m ops preflight|status|dashboard|submit` (see README)."""
