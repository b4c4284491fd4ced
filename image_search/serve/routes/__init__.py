"""One module-level router per resource; ``serve.api`` mounts them."""
