"""The published contract: where a build lives under the index prefix, its versioned documents,
publishing (pointer last) and loading it back. Imports index/ and storage/; nothing below imports
it."""
