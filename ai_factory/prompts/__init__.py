"""Prompt registry: prompt files (``spec``), versions and aliases in MLflow (``registry``), and the
runtime view the gateway reads (``view``). Importing this package does not import MLflow."""

from ai_factory.prompts.spec import PromptFileError, PromptSpec, load_prompt_file, render_messages

__all__ = ["PromptFileError", "PromptSpec", "load_prompt_file", "render_messages"]
