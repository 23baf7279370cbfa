"""Files: atomic io, the manifest, embedding stores, the audit folder, stage records, the
spec, prompts, survey tables and image-folder ingest. No jax here: this layer only reads
and writes (a test checks that importing it pulls in neither jax nor torch)."""
