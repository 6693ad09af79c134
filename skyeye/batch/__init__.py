"""`python -m skyeye.batch`: the whole-scene pipeline over many scenes on Ray, one summary table."""
