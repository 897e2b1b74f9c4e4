"""Place users in a finished run's segments without re-clustering.

The rule (`Segmenter.place`, the same for a new user and for a user seen in training):
0. a user with no tags and no usable text (`tagger.stages.data.has_usable_text`) gets no vector and
   is `unsegmented` (segment -1, empty name, a reason), as in `tagger segment`;
1. reduce the user's vector with the saved PCA; among the 10 users the clustering placed itself that are
   nearest to it, take the nearest one that the user is at least as close to as that
   member's own nearest fellow member; the user joins its segment (`cluster`) — a training member is at distance 0 from
   itself, so it always gets its original segment;
2. otherwise the user is noise: with the run's default `assign_noise`, it joins the segment
   whose clustered members' centroid is most similar (`nearest`, as training placed its noise
   users), else it stays in no segment (`noise`);
3. strength is the cosine to the segment's centroid (as in training); a user whose strength
   is below the weakest training member of that segment fits it worse than anyone did and
   gets segment "none" (`outlier`);
4. the user's parent (`parent_id`, `parent_name`) is the parent of that segment in the saved
   segment tree: -1 and "" for a user in no segment and for every user of a flat run;
5. with the run's `--sensitive exclude`, a user placed in a segment about a sensitive topic (or
   under one) is left unsegmented, the category as the reason, as `tagger segment` leaves them.

That rule needs the user's tags, so it runs with `--llm`. By default `assign` starts no LLM: the
run's distilled placer (`tagger.stages.placer`) places each user from their text alone (the
encoder's vector joined with the run's phrase space): `assigned_by = distilled`, `confidence` its
probability, strength the cosine to the segment's centroid, and `status = unread` (no tags).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tagger.lifecycle.segment_model import SegmentModel
from tagger.stages.clustering import Placement

NONE_NAME = "none"


def place(model: SegmentModel, vectors: np.ndarray, *, assign_noise: bool = True) -> Placement:
    """The saved segmentation's placement of `vectors` (the rule above), by segment id, made as
    the model's users' were: `model.vectors_for` joins the encoder's vectors with the run's phrase space."""
    return model.place(vectors, assign_noise=assign_noise)


def training_agreement(training: pd.DataFrame | None, users: pd.DataFrame) -> dict[str, Any] | None:
    """Share of users that were in the training run (its users table, `training`) and got their
    original segment back, overall and split by how training assigned them (cluster = a member
    of the clustering, nearest = noise); with `same_parent` the share that got their original
    parent, when the run has parents."""
    if training is None:
        return None
    both = users.merge(training, on="user_id", suffixes=("", "_training"))
    if both.empty:
        return None
    same = both["segment_id"] == both["segment_id_training"]
    out: dict[str, Any] = {"users": len(both), "same_segment": round(float(same.mean()), 4)}
    with_parent = both[both["parent_id_training"] >= 0] if "parent_id_training" in both else both.iloc[:0]
    if len(with_parent):
        out["same_parent"] = round(float((with_parent["parent_id"] == with_parent["parent_id_training"]).mean()), 4)
    for kind, group in both.groupby("assigned_by_training"):
        agree = group["segment_id"] == group["segment_id_training"]
        out[str(kind)] = {"users": len(group), "same_segment": round(float(agree.mean()), 4)}
    return out
