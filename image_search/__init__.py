"""S3-backed text and image search over CLIP embeddings and a FAISS index."""

__version__ = "0.1.0"
