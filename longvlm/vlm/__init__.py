"""The vision-language model side: loading, prompts, visual encoding, positions, answering."""

from longvlm.vlm import rope as _rope

_rope.register()  # longvlm's rope types must exist before any config using them is loaded
