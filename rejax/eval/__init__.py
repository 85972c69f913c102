"""Evaluation: encoding corpora and queries, retrieval runs and their trec_eval-compatible metrics."""
