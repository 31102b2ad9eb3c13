"""CX tasks: what an org plans to do for its customers in a period, measured or judged."""
