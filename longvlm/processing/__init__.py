"""Native-resolution preprocessing of Qwen2-VL-family vision towers: sizes, the vision spec, pixel patches."""
