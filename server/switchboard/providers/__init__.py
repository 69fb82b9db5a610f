"""Provider adapters: the only package that talks to providers (and litellm)."""

from switchboard.providers.base import Provider, ProviderStream

__all__ = ["Provider", "ProviderStream"]
