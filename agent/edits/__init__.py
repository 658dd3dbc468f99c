"""Edits a model proposes: SEARCH/REPLACE blocks and unified diffs, parsed tolerantly and applied."""
