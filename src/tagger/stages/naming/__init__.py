"""Segments → readable names, contrastive, grounded and topical; one package, one module a step:

- `settings`   `NamingSettings.from_config`: the one setup every command names with
- `topical`    which phrases are topics of a segment, each verdict with its rule (wordfreq background)
- `profile`    `NamingCorpus` (what naming reads of the users) and the immutable `SegmentProfile`
- `sensitive`  health, religion, politics … (prompts/data/sensitive.toml): flagged, named as topics
- `candidates` immutable `NameOption`s: taxonomy audience names and names built from topical phrases
- `ranking`    every option scored on one scale in the encoder's space
- `llm`        the naming request (rendered, schema, parsed), the same one `prompts render` shows
- `describe`   one sentence per segment, and evidence quotes that are whole or elided with "…"
- `tree`       parents named by a shared taxonomy node or topic, or not made at all
- `stage`      the level's profiles, then the tree named leaves first
"""

from tagger.stages.naming.candidates import NameOption
from tagger.stages.naming.llm import NAME_VARIABLES, NamingRequest, naming_request
from tagger.stages.naming.profile import NamingCorpus, SegmentProfile, profile_segments
from tagger.stages.naming.ranking import rank_options
from tagger.stages.naming.settings import NAMING_MAX_TOKENS, NamingSettings, audience_words
from tagger.stages.naming.stage import NamedTree, SegmentName, best_name, name_rule, name_tree, profile_level

__all__ = ["NAME_VARIABLES", "NAMING_MAX_TOKENS", "NameOption", "NamedTree", "NamingCorpus", "NamingRequest",
           "NamingSettings", "SegmentName", "SegmentProfile", "audience_words", "best_name", "name_tree",
           "name_rule", "naming_request", "profile_level", "profile_segments", "rank_options"]
