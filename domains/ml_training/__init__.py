"""The ml_training domain: a byte-level GPT trained for a fixed budget, judged on val_bpb (see README.md)."""
