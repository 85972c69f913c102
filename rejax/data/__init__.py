"""Training data: record schema, JSONL -> ArrayRecord, the Grain pipeline, and text formatting."""
