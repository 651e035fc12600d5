"""Open a streamrec snapshot with safetensors and numpy alone.

    python3 docs/examples/load_snapshot.py data/streamrec/snapshots/<version>

Prints, as JSON, the same summary numbers `streamrec snapshot show <version>` prints, computed
here from the raw files (the test `tests/python_example.rs` checks that they agree).
"""
import hashlib
import json
import pathlib
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

snapshot = pathlib.Path(sys.argv[1])
manifest = json.loads((snapshot / "manifest.json").read_text())

# Every file is checked against the manifest before use.
for learner, entry in manifest["learners"].items():
    digest = hashlib.sha256((snapshot / entry["file"]).read_bytes()).hexdigest()
    assert digest == entry["sha256"], f"{learner}: {entry['file']} does not match the manifest"

# Item embeddings: a [items x dim] float32 matrix; the row ids are in the file's metadata.
embeddings = load_file(snapshot / "embeddings.safetensors")
with safe_open(snapshot / "embeddings.safetensors", framework="np") as f:
    state = json.loads(f.metadata()["state"])
ids = state["ids"]
vectors = embeddings["input"]
norms = np.linalg.norm(vectors, axis=1)

def nearest(item, k=10):
    """Cosine neighbours of one item, as the engine computes them."""
    v = vectors[ids.index(item)]
    cos = vectors @ v / (norms * np.linalg.norm(v))
    order = sorted((i for i in range(len(ids)) if ids[i] != item), key=lambda i: (-cos[i], ids[i]))
    return [ids[i] for i in order[:k]]

# Popularity: forward-decayed sums; the decayed count at the latest event time is
# sum * 2^(-(watermark - landmark) / half_life).
popularity = json.loads((snapshot / "popularity.json").read_text())
decay = 2.0 ** (-(popularity["watermark"] - popularity["landmark"]) / popularity["config"]["half_life_ms"])
scores = {item: s * decay for item, s in popularity["sums"].items()}
top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:10]

# Bandit: per-item ridge models, A^-1 [arms x d x d] and b [arms x d]; theta = A^-1 b.
bandit = load_file(snapshot / "bandit.safetensors")
theta = np.einsum("nij,nj->ni", bandit["a_inv"], bandit["b"]) if len(bandit["keys"]) else np.zeros((0, 0))

print(json.dumps({
    "version": manifest["version"],
    "last_seq": manifest["stream"]["STREAMREC_EVENTS"],
    "popularity_top": [{"item_id": i, "score": s} for i, s in top],
    "embeddings": {
        "items": len(ids),
        "dim": int(vectors.shape[1]),
        "mean_vector_norm": float(norms.mean()),
        "nearest_of_first_item": nearest(ids[0]) if ids else [],
    },
    "bandit": {"arms": int(len(bandit["keys"])), "total_pulls": int(bandit["pulls"].sum()),
               "theta_shape": list(theta.shape)},
}))
