import pytest

from longvlm.ingest.pdf import PdfDocument
from longvlm.testing import (page_fact, write_encrypted_pdf, write_synthetic_pdf, write_text_pdf,
                                        write_zero_page_pdf)
from longvlm.errors import InputError

# Real MMLongBench-Doc files without any text layer (slide decks exported as images).
IMAGE_ONLY = {"bigdatatrends", "caltraincapacity", "ddoseattle", "ecommerceopportunity", "indonesiamobile",
              "nielsen2015"}


def test_pages_text_and_rendering(sixty_page_pdf):
    with PdfDocument(sixty_page_pdf) as doc:
        assert doc.page_count == len(doc) == 60
        for index in (0, 29, 59):
            assert page_fact(index + 1) in doc.page_text(index).replace("\n", " ")
            assert doc.page_label(index) == str(index + 1)
        image = doc.render(0, dpi=72)
        assert image.mode == "RGB" and image.size == (595, 842)
        assert doc.page_size(0, 144) == (1684, 1190)
        small = doc.render(0, dpi=144, max_pixels=100_000)
        assert small.width * small.height <= 100_000 and small.width > 200


def test_page_labels(tmp_path):
    path = write_text_pdf(tmp_path / "labels.pdf", ["a", "b", "c", "d"],
                          labels=[{"startpage": 0, "prefix": "", "style": "r", "firstpagenum": 1},
                                  {"startpage": 2, "prefix": "A-", "style": "D", "firstpagenum": 1}])
    with PdfDocument(path) as doc:
        assert [doc.page_label(i) for i in range(4)] == ["i", "ii", "A-1", "A-2"]


@pytest.mark.parametrize("make,problem", [
    (write_encrypted_pdf, "encrypted"),
    (write_zero_page_pdf, "zero pages"),
    (lambda p: p.write_bytes(b"%PDF-1.4 garbage that is not a pdf" * 20), "corrupt"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: None, "not found"),
])
def test_bad_pdfs_raise_one_clear_error(tmp_path, make, problem):
    path = tmp_path / "bad.pdf"
    make(path)
    with pytest.raises(InputError, match=problem) as err:
        PdfDocument(path)
    assert str(path) in str(err.value)


def test_all_shared_pdfs_ingest(shared_pdfs):
    assert len(shared_pdfs) == 30
    without_text = set()
    for path in shared_pdfs:
        with PdfDocument(path) as doc:
            assert doc.page_count >= 10
            last = doc.page_count - 1
            image = doc.render(last, dpi=36)
            assert image.width > 50 and image.height > 50
            assert doc.page_label(last)
            if not any(doc.page_text(i).strip() for i in range(doc.page_count)):
                without_text.add(path.name)
    assert {name for name in without_text if any(name.startswith(p) for p in IMAGE_ONLY)} == without_text
    assert len(without_text) == 6


def test_largest_shared_pdf(shared_pdfs):
    biggest = max(shared_pdfs, key=lambda p: PdfDocument(p).page_count)
    with PdfDocument(biggest) as doc:
        assert doc.page_count >= 100
        assert sum(1 for _ in doc.iter_render(list(range(0, doc.page_count, 20)), dpi=20)) == 6


def test_image_under_a_pdf_name_is_refused(tmp_path):
    from bad_input_files import write_png_as_pdf

    path = write_png_as_pdf(tmp_path / "fake.pdf")
    with pytest.raises(InputError, match="not a PDF") as err:
        PdfDocument(path)
    assert str(err.value).startswith(f"{path}: ")


def test_pages_with_extreme_aspect_ratio_are_skipped(tmp_path):
    import pymupdf

    path = tmp_path / "mixed.pdf"
    doc = pymupdf.open()
    doc.new_page(width=595, height=842)
    doc.new_page(width=14400, height=10)
    doc.new_page(width=595, height=842)
    doc.save(path)
    doc.close()
    with PdfDocument(path) as pdf:
        assert [pdf.page_usable(i) for i in range(3)] == [True, False, True]
        assert pdf.usable_pages(range(3)) == [0, 2]
        assert list(pdf.skipped_pages) == [2] and "aspect ratio 1440:1" in pdf.skipped_pages[2]
        with pytest.raises(InputError, match="page 2 cannot be rendered"):
            pdf.render(1)
        with pytest.raises(InputError, match="no usable page: page 2 is 14400x10 pt"):
            pdf.usable_pages([1])
        assert pdf.usable_pages([]) == []
