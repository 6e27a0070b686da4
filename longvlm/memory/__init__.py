"""The VideoLLaMB-style memory bridge: the bridge, its bounded state, SceneTilling, streaming a video through it, loading and training it."""
