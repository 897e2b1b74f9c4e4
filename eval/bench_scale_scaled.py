"""Experiment: the cluster stage at N users with HDBSCAN's sizes scaled to the 50k fit sample.

    .venv/bin/python eval/bench_scale_scaled.py 1000000 > eval/results/bench_scale_scaled.json

Segmenter applies the full-population minimum segment size (500 at 1M) to its 50k sample, so
each of the 950k placed users needs a 2*250-neighbour query; here the sizes are scaled by
50k/N (25 at 1M), the same density a full fit would use. Same synthetic users as bench_scale.
"""
import sys, time, json, numpy as np, hdbscan, resource
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import synthetic_users
from tagger.embedding import create_encoder, user_vectors
from tagger.clustering import Segmenter, default_min_segment_size
from concurrent.futures import ThreadPoolExecutor
n = int(sys.argv[1])
tagged, docs, topic = synthetic_users(n, 0)
v, has, _ = user_vectors(tagged, docs, create_encoder("minilm"), tag_weight=1.0, whole_document=False)
del tagged, docs
t0 = time.perf_counter()
s = Segmenter(seed=0)
from tagger.clustering import _unit
r = s._reduce(_unit(v))
rng = np.random.default_rng(0)
rows = np.sort(rng.choice(n, 50_000, replace=False))
size = max(2, round(default_min_segment_size(n) * 50_000 / n))
m = hdbscan.HDBSCAN(min_cluster_size=size, min_samples=max(1, size // 2), prediction_data=True, core_dist_n_jobs=1).fit(r[rows])
fit_s = time.perf_counter() - t0
rest = np.setdiff1d(np.arange(n), rows)
parts = [rest[i:i + 25_000] for i in range(0, len(rest), 25_000)]
with ThreadPoolExecutor(2) as pool:
    placed = list(pool.map(lambda p: hdbscan.approximate_predict(m, r[p]), parts))
labels = np.full(n, -1); labels[rows] = m.labels_
for p, (l, _) in zip(parts, placed): labels[p] = l
from sklearn.metrics import adjusted_rand_score
print(json.dumps({"users": n, "fit_min_cluster_size": size, "reduce+fit_s": round(fit_s, 1), "total_cluster_s": round(time.perf_counter() - t0, 1),
                  "segments": int(m.labels_.max() + 1), "in_clusters": int((labels >= 0).sum()),
                  "ari_vs_generating_topic": round(adjusted_rand_score(topic, labels), 4),
                  "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
