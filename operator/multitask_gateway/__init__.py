"""The per-task gateway in front of the inference server (TGI or vLLM).

Old per-task clients keep calling their Service; the gateway finds the task (path, X-Task
header or Host), wraps the input with the task's instruction and prompt template, constrains
classification answers to the task's labels and forwards to the one unified model.
See docs/serving.md; run it with `mtm gateway`.
"""
