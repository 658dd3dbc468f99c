"""The API key a model needs, known without litellm for the usual providers: importing litellm takes 5 to 15 seconds,
and a missing key is said before that. Other providers, and any model with an api_base (a local server may need no
key), are left to litellm's own check (LiteLLMModel.check_environment) when the run starts."""
from __future__ import annotations

import os

# provider (a litellm model name's prefix) -> the one variable litellm takes its key from; tests/test_cli.py holds
# this table to litellm's validate_environment
KEYS = {
    "openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "mistral": "MISTRAL_API_KEY",
    "groq": "GROQ_API_KEY", "deepseek": "DEEPSEEK_API_KEY", "openrouter": "OPENROUTER_API_KEY", "xai": "XAI_API_KEY",
    "cohere": "COHERE_API_KEY", "together_ai": "TOGETHERAI_API_KEY", "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "huggingface": "HUGGINGFACE_API_KEY", "cerebras": "CEREBRAS_API_KEY",
}


def missing_key(model: str, api_base: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The variable `model` needs that the environment lacks, when that is known without litellm; else None."""
    provider, _, name = model.partition("/")
    variable = KEYS.get(provider) if name else None
    if api_base or variable is None or variable in (os.environ if environ is None else environ):
        return None
    return variable


def missing_key_message(model: str, missing: list[str]) -> str:
    return (f"model {model!r} needs {' and '.join(missing)}: set {'them' if len(missing) > 1 else 'it'} in the "
            f"environment (a local server given with --api-base needs no key)")
