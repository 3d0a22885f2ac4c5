"""Repository tools that build this repository's own app (documentation generators)."""
