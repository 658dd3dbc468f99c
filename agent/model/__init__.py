"""Model access: litellm sessions with budgets and trajectories, and the prompts rendered for them."""
