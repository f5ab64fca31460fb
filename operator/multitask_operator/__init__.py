"""multitask-operator: one multi-task LLM instead of one fine-tuned service per NLP task."""

__version__ = "0.1.0"
