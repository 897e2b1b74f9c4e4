"""tagger: comments in, named user segments out."""

__version__ = "0.1.0"
