"""Rules shared by training, export and serving; imports only the core dependencies (numpy, pillow)."""
