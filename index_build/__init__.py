"""Index building: read documents, chunk them, embed the chunks, write the index atomically."""
