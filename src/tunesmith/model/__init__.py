"""Models: loading (hub, folder, GGUF, tiny), chat templates, adapters and devices."""
