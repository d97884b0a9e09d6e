"""Language models: a muP/SP GPT decoder, offline byte-level corpora and the coordinate check."""
