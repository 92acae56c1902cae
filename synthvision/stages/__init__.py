"""The pipeline's stages: `table` says what each one is (upstream, config, output, per shard or per
run); everything that lists stages derives from it."""

from synthvision.stages.table import NAMES, STAGES, Stage, enabled, lineage, stage, stage_hash

__all__ = ["NAMES", "STAGES", "Stage", "enabled", "lineage", "stage", "stage_hash"]
