"""Reading inputs: what kind a file is, PDFs (PyMuPDF), videos (decord, bounded reads), images, frame sampling, the derived-data cache."""
