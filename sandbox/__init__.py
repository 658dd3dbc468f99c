"""Isolated execution of untrusted code: limits, isolation levels, the audit-hook monitor, worktrees and pytest runs."""
