"""The data path for one input: `encode.encode` (detect the kind, rank, plan, read, run the vision tower,
compress), then `answer.answer` (chat tokens, KV press, greedy generation); `ask.ask` does both for one
question. The public names are re-exported by `longvlm` itself."""
