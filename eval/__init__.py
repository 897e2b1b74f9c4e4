"""Segment-quality harness: tagger vs baselines on labeled comment files (see README, Evaluation)."""
