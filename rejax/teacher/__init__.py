"""Training data made with a model: hard negatives mined (`rejax data mine`), teacher scores added (`rejax data
score`); the model behind both, a decoder, a sentence-transformers bi-encoder or CrossEncoder, or BM25
(`scorers.py`)."""
