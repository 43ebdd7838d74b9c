"""The domain-neutral campaign loop, judge, proposers and executors (never imports torch)."""
