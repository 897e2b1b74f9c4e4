"""The pipeline's stages, one module each, in the order a user's comments pass through them:

1. `forum`       text quoted from others and signatures repeated across a user's posts
2. `data`        load CSV/Parquet/JSONL → cleaned comments → one document per user, every comment kept
3. `canon`       one form per concept: plurals merged into the singular the data holds, Chinese
                 words by jieba (used by candidates, tagging and naming)
4. `candidates`  candidate interest phrases from each user's own words (grounded tagging's enum)
5. `excerpts`    the sentences, across all of a user's comments, that fill the LLM's prompt budget
6. `tagging`     batched, schema-constrained LLM calls → validated tags with evidence quotes
7. `embedding`   text encoders and user vectors (tags blended with the mean of every comment)
8. `vector_store` each text embedded once: its vector kept by encoder identity and text
9. `ray_encoder` the encoder's replicas on a Ray cluster, where users outgrow one machine
10. `lexical`    the users' own phrases as a small LSA space, joined to the user vectors
11. `sampling`   with an LLM budget (--llm-users): the sample the LLM reads, covering every group
12. `tree`       the number of leaf segments asked for (merge or split), and the parents above them
13. `clustering` PCA → Louvain/HDBSCAN consensus over resamples → noise policy → the tree; sklearn-style `Segmenter`
14. `placer`     a placer distilled from the read users' segments, from LLM-free features
15. `taxonomy`   the vocabulary names come from (IAB Content Taxonomy 3.1), as audience names
16. `naming`     segment profiles and grounded LLM names at every level, with the template fallback
17. `recommend`  items each segment holds far more often than everyone

`tagger.pipeline` calls them in this order. A stage imports only earlier stages and the shared
modules (`tagger.schemas`, `errors`, `cache`, `prompts`, `llm`, ...), never `tagger.run`,
`tagger.lifecycle`, `tagger.cli` or `tagger.pipeline` (tests/test_layout.py checks this).
"""
