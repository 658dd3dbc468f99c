"""The optimize loop and its parts: the run (optimizer), judging a candidate (verdict, guards), the reviewer hooks and
the terminal reviewer."""
