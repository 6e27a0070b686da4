"""Regenerate the small sample inputs shipped in samples/ (deterministic)."""

from __future__ import annotations

import os

from longvlm.testing import write_barcode_video, write_text_pdf

HERE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "samples")

REPORT_PAGES = [
    "Annual Report of the Lighthouse Cooperative\n\nThis sample document ships with longvlm so that the "
    "pipeline can be tried offline. Each page holds one fact.",
    "Page 2. Membership grew to 1,240 households this year.",
    "Page 3. The cooperative operates 7 lighthouses along the northern coast.",
    "Page 4. Maintenance spending was 318,000 euros.",
    "Page 5. The oldest lighthouse, Kestrel Point, was built in 1867.",
    "Page 6. Visitor numbers reached 52,300, a record.",
    "Page 7. The secret code of the annual meeting is 4417.",
    "Page 8. Solar panels now power 5 of the 7 lighthouses.",
    "Page 9. The board has 9 members, elected for 3 years.",
    "Page 10. Next year's budget is 402,000 euros.",
    "Page 11. Volunteers logged 6,800 hours of work.",
    "Page 12. Contact: the harbour office, open Monday to Friday.",
]


def main() -> None:
    os.makedirs(HERE, exist_ok=True)
    write_text_pdf(os.path.join(HERE, "report.pdf"), REPORT_PAGES)
    write_barcode_video(os.path.join(HERE, "clock.mp4"), 120, fps=10, height=112, width=112, scene_seconds=30)
    for name in sorted(os.listdir(HERE)):
        print(name, os.path.getsize(os.path.join(HERE, name)), "bytes")


if __name__ == "__main__":
    main()
