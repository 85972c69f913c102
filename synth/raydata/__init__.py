"""The ray engine (`config.engine = "ray"`): the LLM stages' requests through Ray Data LLM processors, mining's
embeddings on Ray actors; imported only when that engine is asked for (the optional extra `ray`)."""
