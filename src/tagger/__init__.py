"""tagger: comments in, named user segments out."""

__version__ = "0.1.0"

# The Python API (tagger.api) is imported on first use so `import tagger` stays light.
_API = ("Segmentation", "open_run", "recut_segments", "rename_segments", "segment_users")
__all__ = ["Segmentation", "__version__", "open_run", "recut_segments", "rename_segments", "segment_users"]


def __getattr__(name: str):
    if name in _API:
        from tagger import api

        return getattr(api, name)
    raise AttributeError(f"module 'tagger' has no attribute '{name}'")
