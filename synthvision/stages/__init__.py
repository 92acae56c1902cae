"""One file per stage of the pipeline, each reading top to bottom as its algorithm in numbered steps.

What a stage *is* (upstream, config sections, output, per shard or per run) is a row of
`synthvision.core.stage_table.STAGES`; the files here are what each one does.
"""
