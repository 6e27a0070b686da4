"""Text of pages and frames (text layer, OCR), question-aware ranking (BM25 + MiniLM), and the text route with its small LM."""
