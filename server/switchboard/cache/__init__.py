"""The response cache: exact answers by request hash, semantic ones by prompt similarity."""
