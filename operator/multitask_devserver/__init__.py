"""A development stand-in for the inference server: TGI's API over a transformers model on CPU.

    mtm serve-model DIR [--port 8081]

Kept apart from `multitask_gateway` so that the production gateway imports no torch at all
(an import-linter contract checks it); it reuses the gateway's request checks and label regexes.
"""
