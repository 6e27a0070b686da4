"""Token-budget planning: per-page resolutions, video frame counts and sizes, GIRAFFE hybrid resolution."""
