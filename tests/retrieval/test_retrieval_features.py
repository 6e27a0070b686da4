"""Ranking features of issue 27 on small fixed inputs: reciprocal-rank fusion, neighbour smoothing, figure/table
labels, question-type cues, tables as text and carried section headings (no model weights: lexical only)."""

import numpy as np
import pytest

from longvlm.errors import ConfigError
from longvlm.retrieval.page_text import (TextItem, body_font_size, carried_headings, page_headings,
                                         table_text)
from longvlm.retrieval.ranking import (QuestionSelector, index_text, label_score, numeric_density,
                                       question_labels, rrf, smooth_neighbours)

pytest.importorskip("bm25s")


def pages(texts, extras=None):
    return [TextItem("page", i, t, "layer", extra=(extras or {}).get(i, "")) for i, t in enumerate(texts)]


def test_rrf_math():
    scores = np.array([0.2, 0.9, 0.5, 0.9])
    assert np.allclose(rrf(scores, k=60), [1 / 64, 1 / 61, 1 / 63, 1 / 61])  # ties share the best rank
    valid = np.array([True, True, False, True])
    assert np.allclose(rrf(scores, k=0, valid=valid), [1 / 3, 1, 0, 1])  # invalid items: no term, not ranked
    assert rrf(np.zeros(0)).size == 0


def test_rrf_fusion_orders_by_summed_reciprocal_ranks():
    selector = QuestionSelector(False, fusion="rrf", rrf_k=1.0, reference_weight=0.0)
    lexical = np.array([3.0, 2.0, 1.0, 0.0])
    dense = np.array([0.1, 0.9, 0.5, -1.0])
    signals = {"lexical": lexical, "dense": dense}
    fused = selector._fuse(signals, {"lexical": (lexical, lexical > 0), "dense": (dense, dense > -1)})
    # (k + 1) * (1 / (k + rank_lex) + 1 / (k + rank_dense)); item 3 matched neither signal
    assert np.allclose(fused, [2 * (1 / 2 + 1 / 4), 2 * (1 / 3 + 1 / 2), 2 * (1 / 4 + 1 / 3), 0.0])
    with pytest.raises(ConfigError):
        QuestionSelector(False, fusion="max")


def test_neighbour_smoothing_math():
    x = np.array([0.0, 1.0, 0.0, 0.0, 0.5])
    # score + weight * mean of the neighbours (the single neighbour at either end)
    assert np.allclose(smooth_neighbours(x, 0.5), [0 + 0.5 * 1.0, 1.0 + 0.5 * 0.0, 0.0 + 0.5 * 0.5,
                                                   0.0 + 0.5 * 0.25, 0.5 + 0.5 * 0.0])
    assert np.allclose(smooth_neighbours(x, 0.0), x)
    assert np.allclose(smooth_neighbours(np.array([2.0]), 1.0), [2.0])


def test_neighbour_smoothing_lifts_the_continuation_page():
    texts = ["zebra budget overview totals", "continued from the previous page: figures for the last year",
             "lunch menu", "parking rules", "zebra"]
    plain = QuestionSelector(False, reference_weight=0.0, neighbour_weight=0.0).rank("zebra budget", pages(texts))
    smooth = QuestionSelector(False, reference_weight=0.0, neighbour_weight=0.3).rank("zebra budget", pages(texts))
    assert plain.order[0] == smooth.order[0] == 0
    assert smooth.order[1] == 4 and smooth.order[2] == 1  # the page after the best match comes before the rest
    assert plain.order.index(1) > smooth.order.index(1)


def test_figure_and_table_labels():
    assert question_labels("In figure 3, how many icons are used?") == [("figure", "3")]
    assert question_labels("According to table II, which datasets?") == [("table", "ii")]
    assert question_labels("Fig. 2b and Table 4") == [("figure", "2b"), ("table", "4")]
    assert question_labels("the figure in page 6") == []
    assert label_score("Some text\nFigure 3: The pipeline", [("figure", "3")]) == 1.0
    assert label_score("as shown in Fig. 3, the model", [("figure", "3")]) == 0.5
    assert label_score("Figure 13: other", [("figure", "3")]) == 0.0
    assert label_score("TABLE II\nSUMMARY OF DATASETS", [("table", "ii")]) == 1.0
    texts = ["as Figure 3 shows, retrieval helps", "intro", "Figure 3: Retrieval pipeline icons", "other"]
    ranked = QuestionSelector(False, label_weight=1.0).rank("In figure 3, how many icons are used?", pages(texts))
    assert ranked.order[:2] == [2, 0]


def test_question_type_cue_prefers_pages_with_numbers():
    assert numeric_density("growth of 12% in 2019 and 3,400 units") == pytest.approx(3 / 8)
    assert numeric_density("") == 0.0
    texts = ["sales grew strongly over the period in every region", "sales 2019 12% 2020 15% 2021 19%"]
    plain = QuestionSelector(False, reference_weight=0.0).rank("What percentage did sales grow?", pages(texts))
    cued = QuestionSelector(False, reference_weight=0.0, cue_weight=1.0).rank("What percentage did sales grow?",
                                                                                pages(texts))
    assert cued.order[0] == 1 and "cue" in cued.signals
    assert "cue" not in QuestionSelector(False, cue_weight=1.0).rank("Who wrote it?", pages(texts)).signals
    assert plain.signals.keys() >= {"lexical", "reference"}


def test_table_text_rows_carry_their_header():
    table = [["Genre", "Album Sales %", "Song Sales %"], ["Country", "11", "12"], ["Rock", "37", None]]
    text = table_text([table])
    assert text.splitlines() == ["Genre | Album Sales % | Song Sales %", "Genre: Country | Album Sales %: 11 | "
                                 "Song Sales %: 12", "Genre: Rock | Album Sales %: 37"]
    assert table_text([]) == "" and table_text([[[None, ""]]]) == ""


def test_defaults_are_the_benchmarked_ones():
    selector = QuestionSelector(False)
    assert (selector.fusion, selector.neighbour_weight, selector.label_weight, selector.cue_weight) == \
        ("minmax", 0.2, 1.0, 0.0)
    assert QuestionSelector(False, neighbour_weight=0.2).rank("x", [TextItem("frame", 0, "x", "ocr", timestamp=0.0),
                                                                     TextItem("frame", 1, "y", "ocr", timestamp=1.0)]
                                                               ).order == [0, 1]  # frames are not smoothed


def test_extra_text_is_ranked_but_not_part_of_the_text():
    items = pages(["Section overview", "a chart of numbers 11 12 37", "unrelated"],
                  extras={1: "Genre: Country | Album Sales %: 11"})
    assert items[1].text == "a chart of numbers 11 12 37" and "Country" in index_text(items[1])
    ranked = QuestionSelector(False).rank("What are the album sales of the country genre?", items)
    assert ranked.order[0] == 1


def test_headings_by_font_size_and_carried_to_the_next_pages():
    doc = [[("Installation", 18.0), ("Unpack the machine and place it on a flat surface.", 10.0)],
           [("Connect the water tank and switch it on. " * 3, 10.0)],
           [("Descaling", 18.0), ("Run the descaling program monthly.", 10.0)],
           [("Use the supplied agent only.", 10.0)]]
    body = body_font_size(doc)
    assert body == 10.0
    heads = [page_headings(lines, body) for lines in doc]
    assert heads == [["Installation"], [], ["Descaling"], []]
    assert carried_headings(heads) == ["", "Installation", "", "Descaling"]


def test_pdf_pages_carry_the_heading_they_continue(tmp_path):
    pymupdf = pytest.importorskip("pymupdf")
    from longvlm.retrieval.page_text import pdf_page_extras, pdf_page_texts

    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 72), "Descaling the machine", fontsize=20)
    for row in range(8):
        page.insert_text((72, 120 + 20 * row), f"Step {row}: run water through the outlet and wait.", fontsize=10)
    page = doc.new_page()
    for row in range(8):
        page.insert_text((72, 72 + 20 * row), f"Repeat step {row} until the light stops blinking.", fontsize=10)
    path = tmp_path / "manual.pdf"
    doc.save(path)
    assert pdf_page_extras(path, 2) == ["", "Descaling the machine"]
    items = pdf_page_texts(path, ocr="never")
    assert items[1].extra == "Descaling the machine" and "Descaling" not in items[1].text
    assert [it.extra for it in pdf_page_texts(path, ocr="never", extras=())] == ["", ""]
    with pytest.raises(ConfigError):
        pdf_page_extras(path, 2, ("charts",))


def test_printed_page_numbers_from_headers_and_footers():
    from longvlm.retrieval.page_text import edge_numbers, printed_page_numbers

    assert edge_numbers("16  Graduate Studies\nbody text\nGraduate Studies  17") == {16, 17}
    assert edge_numbers("Annual Report | 5\nbody") == {5} and edge_numbers("Page 4\nbody") == {4}
    assert edge_numbers("Revenue grew 12 percent\nin 2019") == set()  # numbers inside sentences are not pages
    # a cover and a contents page come first: the third PDF page prints '1'; a lone number with no
    # neighbour that agrees (the '2019' in a footer) is not a page number
    texts = ["Cover", "Contents", "Intro\n1", "Methods\n2", "Results\n3", "Appendix\n2019"]
    assert printed_page_numbers(texts) == [(), (), (1,), (2,), (3,), ()]
    # two printed pages on a sheet: 4-5, 6-7, 8-9
    spreads = ["4  Guide\ntext\nGuide  5", "6  Guide\ntext\nGuide  7", "8  Guide\ntext\nGuide  9"]
    assert printed_page_numbers(spreads) == [(4, 5), (6, 7), (8, 9)]


def test_a_named_page_is_the_one_printed_with_that_number():
    texts = ["Cover", "Contents", "Intro text\n1", "Methods text\n2", "Results text\n3"]
    from longvlm.retrieval.page_text import printed_page_numbers

    items = [TextItem("page", i, t, "layer", printed=p) for i, (t, p) in enumerate(zip(texts, printed_page_numbers(texts)))]
    selector = QuestionSelector(False, lexical_weight=0.0)
    # 'page 2' is printed on the 4th PDF page; the 2nd PDF page is next
    assert list(selector.reference_scores("What is on page 2?", items)) == [0.0, 0.5, 0.0, 1.0, 0.0]
    # no page prints '5': the 5th PDF page
    assert list(selector.reference_scores("What is on page 5?", items)) == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert selector.rank("What is on page 2?", items).order[:2] == [3, 1]


def test_the_cover_is_the_first_pdf_page_whatever_it_prints():
    from longvlm.references import positional_pages
    from longvlm.retrieval.page_text import printed_page_numbers

    assert positional_pages("How many people are on the cover?", 5) == {1}
    assert positional_pages("What is on the last slide?", 5) == {5} and positional_pages("on page 4", 5) == set()
    texts = ["Cover", "Contents", "Intro text\n1", "Methods text\n2", "Results text\n3"]
    items = [TextItem("page", i, t, "layer", printed=p) for i, (t, p) in enumerate(zip(texts, printed_page_numbers(texts)))]
    selector = QuestionSelector(False, lexical_weight=0.0)
    assert list(selector.reference_scores("Who is on the cover?", items)) == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert list(selector.reference_scores("What does page 1 say?", items)) == [0.5, 0.0, 1.0, 0.0, 0.0]
