"""Repositories: the repository cache and task worktrees, the bundled example repositories, and the baseline cache by
commit and interpreter."""
