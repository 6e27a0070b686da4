"""Query-likelihood reranking with a small causal LM (UPR: Sachan et al., 2022, "Improving Passage Retrieval
with Zero-Shot Question Generation").

A page's relevance is how likely the LM finds the question after reading the page: the mean log-probability
of the question's tokens given "Passage: <text>\\nPlease write a question based on this passage.\\nQuestion:"
(UPR's prompt; UPR used T0 as an encoder-decoder, here a decoder-only LM reads prompt and question as one
sequence). Only the first-stage ranker's top pages are scored, each by its best chunks (the chunks sharing the
most words with the question), and the page score is the best chunk's. The reranked score adds `weight` x the
min-max normalised likelihood to the first-stage score, so the first stage still counts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from longvlm.retrieval.page_text import TextItem
from longvlm.retrieval.ranking import chunk_words, index_text
from longvlm.retrieval.small_lm import SmallLM

UPR_PROMPT = "Passage: {passage}\nPlease write a question based on this passage.\nQuestion:"


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z0-9]+", text) if len(w) > 2}


@dataclass
class QueryLikelihoodReranker:
    """Rerank the `top` best items of a first-stage ranking by the LM's likelihood of the question.

    `chunks_per_item` chunks of `chunk_words` words per item are scored (those sharing most words with the
    question); prompts are cut to their last `max_prompt_tokens` tokens, the question to `max_question_tokens`.
    """

    lm: SmallLM
    top: int = 8
    weight: float = 0.5
    chunks_per_item: int = 2
    chunk_words: int = 100
    max_prompt_tokens: int = 300
    max_question_tokens: int = 64
    batch_size: int = 8

    @torch.no_grad()
    def question_logprobs(self, question: str, passages: Sequence[str]) -> list[float]:
        """Mean log-probability per token of `question` after each passage's UPR prompt (batched, right-padded:
        the padding follows every real token, so it changes no real token's logits)."""
        tokenizer, model = self.lm.tokenizer, self.lm.model
        target = tokenizer(" " + question.strip(), add_special_tokens=False)["input_ids"][:self.max_question_tokens]
        if not target:
            return [0.0] * len(passages)
        rows = [tokenizer(UPR_PROMPT.format(passage=p), add_special_tokens=False)["input_ids"][-self.max_prompt_tokens:]
                for p in passages]
        pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        out: list[float] = []
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            width = max(len(r) for r in batch) + len(target)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, prompt in enumerate(batch):
                ids[i, :len(prompt) + len(target)] = torch.tensor(prompt + target)
                mask[i, :len(prompt) + len(target)] = 1
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits.float()
            logp = torch.log_softmax(logits, dim=-1).cpu()
            goal = torch.tensor(target)
            for i, prompt in enumerate(batch):
                steps = logp[i, len(prompt) - 1:len(prompt) - 1 + len(target)]
                out.append(float(steps.gather(-1, goal[:, None]).mean()))
        return out

    def best_chunks(self, question: str, text: str) -> list[str]:
        """The item's `chunks_per_item` chunks sharing most words with the question (first ones on ties)."""
        chunks = chunk_words(text, self.chunk_words, self.chunk_words // 5) or [""]
        asked = _words(question)
        return sorted(chunks, key=lambda c: -len(asked & _words(c)))[:self.chunks_per_item]

    def item_scores(self, question: str, items: Sequence[TextItem], positions: Sequence[int]) -> dict[int, float]:
        """Position -> the best chunk's question log-likelihood, for `positions`."""
        passages, owner = [], []
        for pos in positions:
            for chunk in self.best_chunks(question, index_text(items[pos])):
                passages.append(chunk)
                owner.append(pos)
        best: dict[int, float] = {}
        for pos, value in zip(owner, self.question_logprobs(question, passages)):
            best[pos] = max(best.get(pos, -np.inf), value)
        return best

    def rerank(self, question: str, items: Sequence[TextItem], scores: np.ndarray,
               order: list[int]) -> tuple[np.ndarray, list[int], np.ndarray]:
        """(scores, order, signal): the first-stage `scores` plus `weight` x the min-max normalised likelihood
        on the `top` items of `order`, which are reordered by it; the other items keep their place after them."""
        head = list(order[:self.top])
        signal = np.zeros(len(items))
        if len(head) < 2 or self.weight == 0:
            return scores, order, signal
        likelihood = self.item_scores(question, items, head)
        values = np.array([likelihood[p] for p in head])
        span = values.max() - values.min()
        normalised = (values - values.min()) / span if span > 0 else np.zeros_like(values)
        new = np.array(scores, dtype=np.float64)
        for p, v in zip(head, normalised):
            signal[p] = v
            new[p] = scores[p] + self.weight * v
        reordered = sorted(head, key=lambda p: -new[p])
        chosen = set(head)
        return new, reordered + [p for p in order if p not in chosen], signal

