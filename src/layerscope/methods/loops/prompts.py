"""Prompts of the loop experiments: a question as one chat turn (token readouts: :mod:`layerscope.readout.tokens`)."""

from __future__ import annotations

from layerscope.errors import LayerscopeError


def chat_prompt(tokenizer, text: str, chat: bool | str = "auto") -> str:
    """``text`` as one user turn of the model's chat template, ready for the assistant's answer.

    Without a chat template (``chat="auto"``) or with ``chat=False``: ``"{text}\\nAnswer:"``.
    """
    template = getattr(tokenizer, "chat_template", None)
    if chat is True and not template:
        raise LayerscopeError("this model's tokenizer has no chat template: use chat=False (plain prompts)")
    if chat and template:
        messages = [{"role": "user", "content": text}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return f"{text}\nAnswer:"
