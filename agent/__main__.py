"""`python -m perfagent`: the command line."""
from perfagent.cli import app

app()
