"""PAdES signing pipeline, visible stamps and the officer → clerk → issue workflow."""
