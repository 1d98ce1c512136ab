"""Models: the `Model` protocol, the providers, and the scripted test double.

Model strings:

- ``local``: the embedded llama.cpp model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M), no network.
- ``local-large``: the embedded 1.5B model.
- ``openai:<model>``: the OpenAI API, or any OpenAI-compatible server through ``OPENAI_BASE_URL``.
- ``anthropic:<model>``: the Anthropic API.
- ``ollama:<model>``: an Ollama server (``OLLAMA_HOST``, default ``http://127.0.0.1:11434``).
"""

from __future__ import annotations

from ..exceptions import ConfigError
from ..messages import ToolCall
from ._base import Model, ModelProfile, estimate_tokens
from .scripted import ScriptedModel

__all__ = ["Model", "ModelProfile", "ScriptedModel", "ToolCall", "estimate_tokens", "resolve_model"]

MODEL_STRINGS = "'local', 'local-large', 'openai:<model>', 'anthropic:<model>' or 'ollama:<model>'"


def resolve_model(spec: str | Model) -> Model:
    """Turn a model string (or an instance) into a `Model`, without contacting it.

    Raises:
        ConfigError: the string names no known provider.
    """
    if not isinstance(spec, str):
        if isinstance(spec, Model):
            return spec
        raise ConfigError(f"model must be a model string ({MODEL_STRINGS}) or a Model, got {type(spec).__name__}")
    if spec in ("local", "local-large"):
        from .local import LocalModel

        return LocalModel(size="large" if spec == "local-large" else "small")
    if spec == "scripted":
        raise ConfigError("model 'scripted' needs its script: pass model=ScriptedModel([...]) from keel.models instead")
    provider, sep, name = spec.partition(":")
    if sep and name:
        if provider == "openai":
            from .openai import OpenAIModel

            return OpenAIModel(name)
        if provider == "ollama":
            from .openai import ollama_model

            return ollama_model(name)
        if provider == "anthropic":
            from .anthropic import AnthropicModel

            return AnthropicModel(name)
    raise ConfigError(f"unknown model {spec!r}; use {MODEL_STRINGS}, or pass a Model instance")
