"""Similar-image search: collections of embedded images, version-consistent indexes, embedded or scale-out engines."""
