"""Named points in the pipeline where the reliability suite kills this process, to prove that a run
survives a SIGKILL anywhere that matters (the technique of FoundationDB's and etcd's failpoints).

Off unless the environment says otherwise: `SYNTHVISION_KILL_AT=generate.before_manifest:3` sends
SIGKILL to this process the 3rd time it reaches `generate.before_manifest`, and
`generate.batch:1:SIGTERM` sends SIGTERM instead (what a scheduler sends a worker it takes back). The
cost when unset is one dictionary lookup per point reached, at most once per batch of images.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

ENV = "SYNTHVISION_KILL_AT"

POINTS = {
    "prompts.class": "language enhancement: after sampling one class's sentences",
    "storage.before_commit": "a file written in full, not yet renamed (local) or uploaded (object store)",
    "generate.batch": "mid-shard: after a batch of images went into the open tar",
    "generate.after_model": "a shard's last batch made, the model given back, its tail not yet written",
    "generate.before_manifest": "a shard's tar committed, its manifest not yet written",
    "score.batch": "mid-scoring: after a batch of a shard's images was encoded",
    "score.after_model": "a shard's last batch encoded, the model given back, its scores not yet written",
    "score.before_manifest": "a shard's scores committed, their manifest not yet written",
    "top_up.recorded": "quota mode: a top-up round recorded, none of its shards generated yet",
    "train.before_report": "classifier tuned and its head written, the report not yet",
    "checkpoint.before_latest": "a training checkpoint's tensors written, `latest.json` not yet moved to it",
    "pretrain.step": "mid-training: after an optimiser step",
}

_reached: Counter[str] = Counter()
_lock = threading.Lock()


def reach(point: str) -> None:
    """Kill this process here if the environment asks for it at this visit of `point`."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, _, rest = spec.partition(":")
    if name != point:
        return
    nth, _, signal_name = rest.partition(":")
    with _lock:
        _reached[point] += 1
        visit = _reached[point]
    if visit == int(nth or 1):
        os.kill(os.getpid(), signal.Signals[signal_name or "SIGKILL"])
