"""The synthesis stages, in order; each reads the previous stages' outputs under the working directory.

Each module has `run(ctx, domain) -> StageSummary | None` (None: other shards still have units).
"""
